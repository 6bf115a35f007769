"""References screened for speech (silero-vad) and consent recordings compared with them by
speaker (resemblyzer), on real speech from distinct people (festival, espeak-ng: tests/speech.py).
Plain Python, as the AudioProcessor runs them."""

from __future__ import annotations

import io

import numpy as np
import pytest
import soundfile as sf

from deployments.args import CloneArgs
from deployments.audio.analysis import SpeakerEncoder, SpeechDetector, speaker_similarity
from deployments.audio.errors import AudioInputError
from deployments.audio.reference import ReferenceLimits, prepare_reference
from tests.speech import SENTENCES, padded, require_speech, speak, to_wav

SCREENED = ReferenceLimits(min_speech_seconds=CloneArgs().min_speech_s)
RATE = 16_000


@pytest.fixture(scope="module")
def detector() -> SpeechDetector:
    return SpeechDetector()


@pytest.fixture(scope="module")
def encoder() -> SpeakerEncoder:
    return SpeakerEncoder()


def _loud(samples: np.ndarray) -> bytes:
    return to_wav((0.5 * samples / np.max(np.abs(samples))).astype(np.float32), RATE)


def _tone(seconds: float = 4.0) -> bytes:
    t = np.arange(int(seconds * RATE)) / RATE
    return _loud(np.sin(2 * np.pi * 220 * t) + 0.3 * np.sin(2 * np.pi * 440 * t))


def _noise(seconds: float = 4.0) -> bytes:
    return _loud(np.random.default_rng(0).standard_normal(int(seconds * RATE)))


def _music(seconds: float = 4.0) -> bytes:
    """A melody of plucked notes with harmonics (what a song's backing sounds like)."""
    rng = np.random.default_rng(2)
    note = int(0.25 * RATE)
    t = np.arange(note) / RATE
    notes = [sum(np.sin(2 * np.pi * f * k * t) / k for k in (1, 2, 3)) * np.exp(-4 * t)
             for f in rng.choice([262, 294, 330, 392, 440, 523], int(seconds / 0.25))]
    return _loud(np.concatenate(notes))


@pytest.mark.parametrize("make", [_tone, _noise, _music], ids=["tone", "noise", "music"])
def test_loud_sound_without_speech_is_refused_naming_the_speech_found(make, detector):
    with pytest.raises(AudioInputError) as refused:
        prepare_reference(make(), limits=SCREENED, speech=detector)
    err = refused.value
    assert err.code == "no_speech" and err.param == "reference_audio"
    assert "s of speech" in str(err) and "at least 1 s" in str(err)


def test_silence_is_refused(detector):
    with pytest.raises(AudioInputError) as refused:
        prepare_reference(to_wav(np.zeros(4 * RATE, np.float32), RATE), limits=SCREENED,
                          speech=detector)
    assert refused.value.code in ("too_short", "no_speech")


def test_real_speech_passes_and_is_trimmed_to_its_speech(detector):
    require_speech()
    upload = padded(speak("kal", SENTENCES[0]), silence_s=1.5)
    unscreened = prepare_reference(upload, limits=ReferenceLimits())
    ref = prepare_reference(upload, limits=SCREENED, speech=detector)
    assert ref.speech_seconds is not None and ref.speech_seconds >= 2.0
    # the noise floor around it is gone: what is left is the speech (and a little padding)
    assert ref.duration_seconds < unscreened.duration_seconds - 1.0
    assert abs(ref.duration_seconds - ref.speech_seconds) < 1.0


def test_the_error_names_the_field_it_screened(detector):
    with pytest.raises(AudioInputError) as refused:
        prepare_reference(_tone(), limits=SCREENED, speech=detector, param="consent_audio")
    assert refused.value.param == "consent_audio" and "consent_audio holds" in str(refused.value)


def _embedding(encoder: SpeakerEncoder, detector: SpeechDetector, wav: bytes) -> np.ndarray:
    ref = prepare_reference(wav, limits=SCREENED, speech=detector)
    return encoder.embed(ref.samples, ref.sample_rate)


def test_a_consent_recording_of_the_same_speaker_clears_the_threshold(encoder, detector):
    require_speech()
    threshold = CloneArgs().consent_threshold
    for speaker in ("kal", "slt", "espeak-f2"):
        reference = _embedding(encoder, detector, speak(speaker, SENTENCES[0]))
        consent = _embedding(encoder, detector, speak(speaker, SENTENCES[1]))
        assert speaker_similarity(reference, consent) >= threshold, speaker


def test_another_speakers_recording_falls_below_the_threshold(encoder, detector):
    require_speech()
    threshold = CloneArgs().consent_threshold
    reference = _embedding(encoder, detector, speak("kal", SENTENCES[0]))
    for other in ("slt", "espeak-f2", "espeak-m7"):
        consent = _embedding(encoder, detector, speak(other, SENTENCES[1]))
        assert speaker_similarity(reference, consent) < threshold, other


def test_embeddings_are_unit_vectors_of_256(encoder, detector):
    require_speech()
    emb = _embedding(encoder, detector, speak("ked", SENTENCES[2]))
    assert emb.shape == (256,) and abs(float(np.linalg.norm(emb)) - 1.0) < 1e-3
    assert sf.info(io.BytesIO(speak("ked", SENTENCES[2]))).samplerate == RATE
