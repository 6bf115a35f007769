"""The output formats we encode, defined once: names, content types, file extensions.

Read everywhere (HTTP schemas, the OpenAI `response_format`, the encoder, docs tests).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class AudioFormat(enum.StrEnum):
    WAV = "wav"
    MP3 = "mp3"
    OPUS = "opus"
    FLAC = "flac"
    AAC = "aac"
    PCM = "pcm"  # raw signed 16-bit little-endian mono, no header


@dataclass(frozen=True)
class FormatInfo:
    content_type: str
    extension: str


FORMAT_INFO: dict[AudioFormat, FormatInfo] = {
    AudioFormat.WAV: FormatInfo("audio/wav", "wav"),
    AudioFormat.MP3: FormatInfo("audio/mpeg", "mp3"),
    AudioFormat.OPUS: FormatInfo("audio/ogg", "opus"),  # Ogg Opus, as OpenAI returns it
    AudioFormat.FLAC: FormatInfo("audio/flac", "flac"),
    AudioFormat.AAC: FormatInfo("audio/aac", "aac"),  # ADTS stream
    AudioFormat.PCM: FormatInfo("audio/pcm", "pcm"),
}

#: Sample rates libopus accepts; opus output at any other rate is resampled to 48 kHz.
OPUS_SAMPLE_RATES = (8000, 12000, 16000, 24000, 48000)
