"""Rendering finished model audio (float32 mono) into the format and shape the client asked for.

Pipeline: pitch -> speed -> resample -> loudness -> encode. `needs_processing` tells callers
when the whole thing is just WAV/PCM packing they can do themselves.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from . import dsp
from .codecs import encode, encoder_sample_rate
from .formats import FORMAT_INFO, AudioFormat

__all__ = ["RenderOptions", "RenderedAudio", "needs_processing", "render"]


class RenderOptions(BaseModel):
    """What the client asked for; defaults mean "WAV of the model output as is"."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    format: AudioFormat = AudioFormat.WAV
    sample_rate: int | None = Field(None, ge=8000, le=48000)  # None: keep the input rate
    speed: float = Field(1.0, ge=0.25, le=4.0)
    pitch: float = Field(1.0, ge=0.5, le=2.0)
    loudness_lufs: float | None = Field(None, ge=-70.0, le=-5.0)
    bitrate_kbps: int | None = Field(None, ge=16, le=320)


@dataclass(frozen=True)
class RenderedAudio:
    """Encoded audio plus what describes it (rate and length of the PCM that was encoded)."""

    data: bytes
    format: AudioFormat
    content_type: str
    sample_rate: int
    num_samples: int

    @property
    def duration_seconds(self) -> float:
        return self.num_samples / self.sample_rate if self.sample_rate else 0.0


def needs_processing(options: RenderOptions, sample_rate: int) -> bool:
    """False when rendering would only pack WAV/PCM at the input rate, unchanged."""
    return not (
        options.format in (AudioFormat.WAV, AudioFormat.PCM)
        and (options.sample_rate is None or options.sample_rate == sample_rate)
        and options.speed == 1.0
        and options.pitch == 1.0
        and options.loudness_lufs is None
    )


def render(samples: np.ndarray, sample_rate: int, options: RenderOptions) -> RenderedAudio:
    """Apply pitch, speed, resampling and loudness in that order, then encode."""
    x = dsp.to_mono(samples)
    if options.pitch != 1.0:
        x = dsp.shift_pitch(x, sample_rate, options.pitch)
    if options.speed != 1.0:
        x = dsp.change_speed(x, sample_rate, options.speed)
    # The rate the encoder really writes (opus/mp3/aac only carry some rates), resampled here
    # once so that loudness is measured on, and the reply reports, what is encoded.
    out_rate = encoder_sample_rate(options.format, options.sample_rate or sample_rate)
    x = dsp.resample(x, sample_rate, out_rate)
    if options.loudness_lufs is not None:
        x = dsp.normalize_loudness(x, out_rate, options.loudness_lufs)
    data = encode(x, out_rate, options.format, bitrate_kbps=options.bitrate_kbps)
    return RenderedAudio(
        data=data,
        format=options.format,
        content_type=FORMAT_INFO[options.format].content_type,
        sample_rate=out_rate,
        num_samples=int(x.shape[0]),
    )
