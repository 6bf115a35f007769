"""Real speech from distinct speakers, for the voice-cloning safety tests and
benchmarks/speaker_similarity.py: Debian's festival voices (each diphone or HTS voice was
recorded from a different person) and espeak-ng's formant voices
(scripts/install_speech.sh installs them; .ci/run calls it).

`speak(speaker, text)` returns WAV bytes at 16 kHz; clips are cached per process.
"""

from __future__ import annotations

import functools
import io
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf

#: Festival voices: speaker name -> the Scheme call that selects it (one person each).
FESTIVAL_VOICES = {
    "kal": "(voice_kal_diphone)",   # American English, male
    "ked": "(voice_ked_diphone)",   # American English, male (another speaker)
    "slt": "(voice_cmu_us_slt_arctic_hts)",  # American English, female (HTS)
}
#: espeak-ng voices used as further speakers (formant synthesis, one "speaker" per variant).
ESPEAK_VOICES = {"espeak-m3": "en-us+m3", "espeak-f2": "en-us+f2", "espeak-m7": "en+m7"}
SPEAKERS = (*FESTIVAL_VOICES, *ESPEAK_VOICES)

#: Sentences of a few seconds each, read by every speaker.
SENTENCES = (
    "The quick brown fox jumps over the lazy dog near the quiet river bank.",
    "I agree that my voice may be recorded and used to create a synthetic voice.",
    "Please call me back tomorrow morning, after nine, about the weekly report.",
    "She sells sea shells by the sea shore, and the shells she sells are surely seashells.",
)
RATE = 16_000


def speech_available() -> bool:
    return shutil.which("text2wave") is not None and shutil.which("espeak-ng") is not None


@functools.lru_cache(maxsize=64)
def speak(speaker: str, text: str) -> bytes:
    """WAV bytes (16 kHz mono) of `speaker` reading `text`."""
    if speaker in FESTIVAL_VOICES:
        with tempfile.TemporaryDirectory() as tmp:  # text2wave seeks in its output file
            path = Path(tmp) / "speech.wav"
            subprocess.run(["text2wave", "-eval", FESTIVAL_VOICES[speaker], "-F", str(RATE),
                            "-o", str(path)], input=text.encode(), capture_output=True,
                           check=True)
            out = path.read_bytes()
    else:
        out = subprocess.run(["espeak-ng", "-v", ESPEAK_VOICES[speaker], "--stdout", text],
                             capture_output=True, check=True).stdout
    samples, rate = sf.read(io.BytesIO(out), dtype="float32")
    return to_wav(samples, rate)


def to_wav(samples: np.ndarray, rate: int) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, samples, rate, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def padded(wav: bytes, silence_s: float) -> bytes:
    """`wav` with `silence_s` of near-silence (a little noise) before and after it."""
    samples, rate = sf.read(io.BytesIO(wav), dtype="float32")
    rng = np.random.default_rng(1)
    pad = (0.003 * rng.standard_normal(int(silence_s * rate))).astype(np.float32)
    return to_wav(np.concatenate([pad, samples, pad]), rate)


def require_speech() -> None:
    """Skip when festival and espeak-ng are missing (a developer's machine), but fail in CI
    (QTTS_REQUIRE_BACKENDS=1, where .ci/run installs them)."""
    import os

    import pytest

    if speech_available():
        return
    message = "festival/espeak-ng missing: run scripts/install_speech.sh"
    if os.environ.get("QTTS_REQUIRE_BACKENDS") == "1":
        pytest.fail(message)
    pytest.skip(message)
