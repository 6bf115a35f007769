"""Whose voice a clip is: resemblyzer's GE2E speaker encoder (Apache-2.0; its weights ship in
the pip package), a 256-dimensional unit vector per utterance.

Two clips of one person score a cosine similarity near 0.8 and above, two people lower: the
measured table and the threshold chosen from it are in docs/platform.md
(benchmarks/speaker_similarity.py makes the table).
"""

from __future__ import annotations

import threading

import numpy as np


def speaker_similarity(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine similarity of two speaker embeddings (-1..1; the encoder's are unit vectors)."""
    return float(np.dot(a, b) / max(float(np.linalg.norm(a) * np.linalg.norm(b)), 1e-12))


class SpeakerEncoder:
    """The encoder, loaded on first use (well under a second), on CPU; calls are serialized
    (one model, small enough that a second copy would not pay)."""

    def __init__(self):
        self._encoder = None
        self._lock = threading.Lock()

    def load(self) -> None:
        with self._lock:
            self._load_locked()

    def _load_locked(self):
        if self._encoder is None:
            self._encoder = _resemblyzer().VoiceEncoder("cpu", verbose=False)
        return self._encoder

    def embed(self, samples: np.ndarray, sample_rate: int) -> np.ndarray:
        """The speaker embedding of float32 mono speech at `sample_rate` (resemblyzer's own
        preprocessing: 16 kHz, volume normalised, long pauses cut)."""
        wav = _resemblyzer().preprocess_wav(np.asarray(samples, dtype=np.float32), source_sr=sample_rate)
        if wav.size == 0:
            raise ValueError("no audio left to embed after preprocessing")
        with self._lock:
            return self._load_locked().embed_utterance(wav)


def _resemblyzer():
    """The resemblyzer module, imported quietly (its webrtcvad imports pkg_resources, which
    warns on every import)."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        import resemblyzer
    return resemblyzer
