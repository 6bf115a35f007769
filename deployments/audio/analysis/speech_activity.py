"""Where a clip's speech is: silero-vad (MIT; its weights ship in the pip package).

`SpeechDetector.find` returns the speech regions of a float32 mono clip at any rate (the
detector itself runs at 16 kHz); `SpeechActivity.speech_only` keeps those regions, so a
reference is trimmed to what was said before a clone prompt is built from it. Music, noise,
tones and silence hold no speech regions, whatever their level.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np

from .. import dsp

#: The rate silero-vad runs at (it takes 8 or 16 kHz).
VAD_SAMPLE_RATE = 16_000
#: Kept around each speech region, so a word's onset and tail are not clipped.
PAD_SECONDS = 0.1
#: Speech probability above which a 32 ms window is speech (silero's default).
SPEECH_THRESHOLD = 0.5


@dataclass(frozen=True)
class SpeechActivity:
    """Speech regions of a clip, as (start, end) sample indices at `sample_rate`."""

    regions: tuple[tuple[int, int], ...]
    sample_rate: int

    @property
    def speech_seconds(self) -> float:
        return sum(end - start for start, end in self.regions) / self.sample_rate

    def speech_only(self, samples: np.ndarray, pad_seconds: float = PAD_SECONDS) -> np.ndarray:
        """The clip's speech regions (each padded by `pad_seconds`, overlaps merged), joined."""
        pad = int(round(pad_seconds * self.sample_rate))
        merged: list[list[int]] = []
        for start, end in self.regions:
            start, end = max(0, start - pad), min(samples.size, end + pad)
            if merged and start <= merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], end)
            else:
                merged.append([start, end])
        if not merged:
            return np.zeros(0, dtype=np.float32)
        return np.concatenate([samples[s:e] for s, e in merged]).astype(np.float32, copy=False)


class SpeechDetector:
    """silero-vad, loaded on first use (about 3 s of CPU), one call at a time (the model
    keeps state across windows, reset per clip)."""

    def __init__(self, threshold: float = SPEECH_THRESHOLD):
        self._threshold = threshold
        self._model = None
        self._lock = threading.Lock()

    def load(self) -> None:
        with self._lock:
            self._load_locked()

    def _load_locked(self):
        if self._model is None:
            from silero_vad import load_silero_vad

            self._model = load_silero_vad()
        return self._model

    def find(self, samples: np.ndarray, sample_rate: int) -> SpeechActivity:
        """The speech regions of float32 mono `samples` at `sample_rate`."""
        import torch
        from silero_vad import get_speech_timestamps

        x16 = dsp.resample(samples, sample_rate, VAD_SAMPLE_RATE)
        with self._lock:
            model = self._load_locked()
            model.reset_states()
            with torch.inference_mode():
                stamps = get_speech_timestamps(torch.from_numpy(x16), model,
                                               threshold=self._threshold,
                                               sampling_rate=VAD_SAMPLE_RATE)
        scale = sample_rate / VAD_SAMPLE_RATE
        regions = tuple((int(s["start"] * scale), min(samples.size, int(s["end"] * scale)))
                        for s in stamps)
        return SpeechActivity(regions, sample_rate)
