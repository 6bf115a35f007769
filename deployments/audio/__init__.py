"""Ray-free audio library: in-process codecs, DSP, reference-upload checks, output rendering.

Plain Python (no Ray import); the AudioProcessor deployment and the ingress wrap it.
See docs/audio.md.
"""

from __future__ import annotations

from .codecs import (
    ACCEPTED_UPLOAD_FORMATS,
    DEFAULT_BITRATE_KBPS,
    DecodedAudio,
    decode,
    encode,
    encoder_sample_rate,
    pcm16le,
    wav_header,
)
from .dsp import (
    change_speed,
    normalize_loudness,
    resample,
    shift_pitch,
    to_mono,
    trim_silence,
    warm_up,
)
from .errors import AudioInputError
from .formats import FORMAT_INFO, OPUS_SAMPLE_RATES, AudioFormat, FormatInfo
from .reference import ReferenceAudio, ReferenceLimits, prepare_reference
from .render import RenderedAudio, RenderOptions, needs_processing, render
from .stream_encoder import StreamEncoder

__all__ = [
    "ACCEPTED_UPLOAD_FORMATS",
    "DEFAULT_BITRATE_KBPS",
    "FORMAT_INFO",
    "OPUS_SAMPLE_RATES",
    "AudioFormat",
    "AudioInputError",
    "DecodedAudio",
    "FormatInfo",
    "ReferenceAudio",
    "ReferenceLimits",
    "RenderOptions",
    "RenderedAudio",
    "StreamEncoder",
    "change_speed",
    "decode",
    "encode",
    "encoder_sample_rate",
    "needs_processing",
    "normalize_loudness",
    "pcm16le",
    "prepare_reference",
    "render",
    "resample",
    "shift_pitch",
    "to_mono",
    "trim_silence",
    "warm_up",
    "wav_header",
]
