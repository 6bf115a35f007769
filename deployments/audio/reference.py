"""Checking and preparing untrusted reference-audio uploads for voice cloning.

`prepare_reference` turns the uploaded bytes into float32 mono at the model's rate, trimmed
and loudness-normalised, or raises AudioInputError (with `param` set) naming the broken limit.
Given a speech detector it also screens the clip: at least `min_speech_seconds` of speech
(silero-vad), and only the speech is kept, so music, tones, noise and silence are refused
(`no_speech`) whatever their level.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from . import dsp
from .codecs import decode
from .errors import AudioInputError

if TYPE_CHECKING:
    from .analysis import SpeechDetector

__all__ = ["ReferenceAudio", "ReferenceLimits", "prepare_reference"]

_MIB = 1024 * 1024


@dataclass(frozen=True)
class ReferenceLimits:
    """Upload size, audible length after trimming (min) / decoded length (max), and the
    speech it must hold when screened (0: not screened)."""

    max_bytes: int = 10 * _MIB
    min_seconds: float = 1.0
    max_seconds: float = 60.0
    min_speech_seconds: float = 0.0


@dataclass(frozen=True)
class ReferenceAudio:
    """A prepared reference: float32 mono at `sample_rate`, `duration_seconds` long;
    `speech_seconds`: the speech it held when screened (then `samples` is that speech)."""

    samples: np.ndarray
    sample_rate: int
    duration_seconds: float
    speech_seconds: float | None = None


def _size(n: int) -> str:
    return f"{n / _MIB:g} MiB" if n % _MIB == 0 else f"{n} bytes"


def prepare_reference(
    data: bytes,
    *,
    limits: ReferenceLimits = ReferenceLimits(),  # noqa: B008 - frozen, safe as a default
    target_sample_rate: int = 24000,
    target_lufs: float = -23.0,
    param: str = "reference_audio",
    speech: SpeechDetector | None = None,
) -> ReferenceAudio:
    """Check and prepare an uploaded reference clip.

    Order: size (never decodes an oversized body) -> empty -> decode, stopping past
    `limits.max_seconds` -> mono -> resample to `target_sample_rate` -> trim leading/trailing
    silence -> at least `limits.min_seconds` of sound left -> with `speech` (and a
    `limits.min_speech_seconds`): at least that much speech, kept alone -> loudness to
    `target_lufs`.
    """
    if len(data) > limits.max_bytes:
        raise AudioInputError(
            "too_large",
            f"{param} is {len(data)} bytes; at most {_size(limits.max_bytes)} is allowed",
            param=param,
        )
    if not data:
        raise AudioInputError(
            "empty",
            f"{param} is empty; upload {limits.min_seconds:g}-{limits.max_seconds:g} s of speech",
            param=param,
        )
    decoded = decode(data, max_seconds=limits.max_seconds, param=param)
    samples = dsp.to_mono(decoded.samples)
    samples = dsp.resample(samples, decoded.sample_rate, target_sample_rate)
    samples = dsp.trim_silence(samples, target_sample_rate)
    seconds = samples.size / target_sample_rate
    if seconds < limits.min_seconds:
        raise AudioInputError(
            "too_short",
            f"{param} has {seconds:.1f} s of audible sound; "
            f"at least {limits.min_seconds:.1f} s of audible sound is required",
            param=param,
        )
    speech_seconds = None
    if speech is not None and limits.min_speech_seconds > 0:
        activity = speech.find(samples, target_sample_rate)
        speech_seconds = activity.speech_seconds
        if speech_seconds < limits.min_speech_seconds:
            raise AudioInputError(
                "no_speech",
                f"{param} holds {speech_seconds:.1f} s of speech; at least "
                f"{limits.min_speech_seconds:g} s of speech is required (music, tones, noise "
                "and silence are not speech)",
                param=param,
            )
        samples = activity.speech_only(samples)
        seconds = samples.size / target_sample_rate
    samples = dsp.normalize_loudness(samples, target_sample_rate, target_lufs)
    return ReferenceAudio(samples=samples, sample_rate=target_sample_rate,
                          duration_seconds=seconds, speech_seconds=speech_seconds)
