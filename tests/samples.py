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


def sine(freq: float = 440.0, seconds: float = 2.0, sr: int = 24000, amp: float = 0.5) -> np.ndarray:
    """A pure tone, for codec and DSP checks."""
    t = np.arange(int(seconds * sr)) / sr
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def peak_hz(x: np.ndarray, sr: int) -> float:
    """The dominant frequency of `x`."""
    spectrum = np.abs(np.fft.rfft(x * np.hanning(x.size)))
    return float(np.argmax(spectrum)) * sr / x.size
