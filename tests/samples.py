"""Audio inputs the tests build (reference clips), shared by unit and graph tests."""

from __future__ import annotations

import io

import numpy as np
import soundfile as sf


def tone(seconds: float, rate: int = 16000) -> np.ndarray:
    """A voiced-like signal: a 180 Hz tone with a little noise (not silence, not clipped)."""
    t = np.arange(int(seconds * rate)) / rate
    rng = np.random.default_rng(0)
    return (0.3 * np.sin(2 * np.pi * 180 * t) + 0.05 * rng.standard_normal(t.size)).astype(np.float32)


def wav_bytes(seconds: float, rate: int = 16000) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, tone(seconds, rate), rate, format="WAV")
    return buf.getvalue()
