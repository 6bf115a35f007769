"""What a listener hears of one audio stream: the load benchmark's per-request measurement.

A stream arrives as pieces of mono PCM at known times (seconds since the request was sent).
`hear` finds the first audible sample (the first 10 ms window, aligned on the stream's own
samples, whose RMS is above -45 dBFS), starts a simulated player there when that piece has
arrived, plays in real time, and counts a gap each time the next piece is due before it has
arrived (the player then waits for it: later pieces are due that much later). Plain numpy,
no I/O: `benchmarks/load.py` records pieces while it reads and calls `hear` afterwards, and
tests feed it pieces with made-up times.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

#: A window is audible when its RMS is above this (dBFS, full scale = 1.0).
AUDIBLE_DBFS = -45.0
#: The window the audible test looks at.
WINDOW_S = 0.010


@dataclass
class Heard:
    """One request as its listener heard it (times in seconds since the request was sent)."""

    first_byte: float | None  # the first audio sample arrived
    first_audio: float | None  # the piece holding the first audible window arrived
    end: float | None  # the last piece arrived
    audio_s: float  # seconds of audio received
    gaps: list[float] = field(default_factory=list)  # each silence the player had to wait
    gap_at: list[float] = field(default_factory=list)  # audio seconds played before each gap

    @property
    def gap_total(self) -> float:
        return float(sum(self.gaps))

    @property
    def gap_max(self) -> float:
        return max(self.gaps, default=0.0)


def first_audible_sample(audio: np.ndarray, sample_rate: int, dbfs: float = AUDIBLE_DBFS,
                         window_s: float = WINDOW_S) -> int | None:
    """Index of the first sample of the first window above `dbfs`, or None (all quiet)."""
    n = max(1, round(window_s * sample_rate))
    whole = audio.size // n
    if whole == 0:
        return None
    frames = np.asarray(audio[: whole * n], dtype=np.float64).reshape(whole, n)
    rms = np.sqrt(np.mean(frames * frames, axis=1))
    loud = np.flatnonzero(rms > 10 ** (dbfs / 20))
    return int(loud[0]) * n if loud.size else None


def hear(pieces: list[tuple[float, np.ndarray]], sample_rate: int) -> Heard:
    """Simulate a player over `pieces` [(arrival time, float samples)], in arrival order."""
    pieces = [(t, np.asarray(a, dtype=np.float32)) for t, a in pieces if np.asarray(a).size]
    if not pieces:
        return Heard(None, None, None, 0.0)
    audio = np.concatenate([a for _, a in pieces])
    starts = np.cumsum([0] + [a.size for _, a in pieces])  # first sample of each piece
    heard = Heard(first_byte=pieces[0][0], first_audio=None, end=pieces[-1][0],
                  audio_s=audio.size / sample_rate)
    first = first_audible_sample(audio, sample_rate)
    if first is None:
        return heard
    # the window is complete once the piece holding its last sample has arrived
    window_end = first + max(1, round(WINDOW_S * sample_rate)) - 1
    holder = int(np.searchsorted(starts, window_end, side="right")) - 1
    playing_at = pieces[holder][0]
    heard.first_audio = playing_at
    # the player starts at `first` at time playing_at; sample p is due at
    # playing_at + stall + (p - first) / rate
    stall = 0.0
    for i in range(holder + 1, len(pieces)):
        due = playing_at + stall + (int(starts[i]) - first) / sample_rate
        arrived = pieces[i][0]
        if arrived > due:
            heard.gaps.append(arrived - due)
            heard.gap_at.append((int(starts[i]) - first) / sample_rate)
            stall += arrived - due
    return heard


def pcm16(data: bytes) -> np.ndarray:
    """Little-endian 16-bit PCM bytes (even length) -> float samples in [-1, 1)."""
    return np.frombuffer(data, dtype="<i2").astype(np.float32) / 32768.0


class Pcm16Pieces:
    """Raw pcm bytes as they arrive (a piece may split a sample) -> timed float pieces."""

    def __init__(self) -> None:
        self.pieces: list[tuple[float, np.ndarray]] = []
        self._odd = b""

    def add(self, t: float, data: bytes) -> None:
        data = self._odd + data
        cut = len(data) - len(data) % 2
        self._odd = data[cut:]
        if cut:
            self.pieces.append((t, pcm16(data[:cut])))
