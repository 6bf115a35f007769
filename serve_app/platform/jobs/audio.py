"""Joining synthesized segments into one clip without clicks.

Consecutive segments overlap by a short equal-power (sine/cosine) crossfade, so there is no
step in the waveform where they meet; the ends of the whole clip get a fade of the same
length, so playback does not start or stop on a non-zero sample.
"""

from __future__ import annotations

import numpy as np


def segment_starts(sizes: list[int], sample_rate: int, crossfade_ms: float) -> list[float]:
    """Where each segment of `crossfade_join` starts in the joined clip, in seconds."""
    fade = int(round(sample_rate * crossfade_ms / 1000))
    starts, length = [], 0
    for size in sizes:
        n = min(fade, length, size) if length and size else 0
        starts.append((length - n) / sample_rate if sample_rate else 0.0)
        length += size - n
    return starts


def crossfade_join(segments: list[np.ndarray], sample_rate: int, crossfade_ms: float) -> np.ndarray:
    """One float32 clip from `segments` (float32 mono); its length is the sum of theirs minus
    one crossfade per join (shorter segments shorten their crossfades)."""
    parts = [np.asarray(s, dtype=np.float32).reshape(-1) for s in segments]
    parts = [p for p in parts if p.size]
    if not parts:
        return np.zeros(0, dtype=np.float32)
    fade = int(round(sample_rate * crossfade_ms / 1000))
    out = parts[0].copy()
    for part in parts[1:]:
        n = min(fade, out.size, part.size)
        if n == 0:
            out = np.concatenate([out, part])
            continue
        t = (np.arange(n, dtype=np.float32) + 0.5) / n
        fade_in, fade_out = np.sin(t * np.pi / 2), np.cos(t * np.pi / 2)
        overlap = out[-n:] * fade_out + part[:n] * fade_in
        out = np.concatenate([out[:-n], overlap, part[n:]])
    n = min(fade, out.size // 2)
    if n:
        ramp = ((np.arange(n, dtype=np.float32) + 0.5) / n)
        out[:n] *= ramp
        out[-n:] *= ramp[::-1]
    return out.astype(np.float32, copy=False)
