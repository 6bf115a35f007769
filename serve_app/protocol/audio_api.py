"""Voice design and cloning over HTTP: the bodies of POST /v1/audio/design and /v1/audio/clone
(the clone's `reference_audio` arrives beside them, as a file part or a data URL)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from deployments.audio import RenderOptions
from deployments.audio.formats import AudioFormat
from serve_app.protocol.fields import (
    CONSENT_CODE_DESCRIPTION,
    INPUT_FORMAT_DESCRIPTION,
    PRONUNCIATION_DESCRIPTION,
    TIMESTAMPS_DESCRIPTION,
    TRANSCRIPT_UNLESS_X_VECTOR,
    Flag,
    InputFormat,
    MaxNewTokens,
    MinFrames,
    Normalize,
    OpenAISpeed,
    OutputSampleRate,
    PronunciationDictionaries,
    Seed,
    SpeechText,
    Timestamps,
    streaming_keeps,
)

_RENDER_FIELDS = ("speed", "pitch", "sample_rate", "loudness_lufs")


_STREAMING = streaming_keeps("stream_format", ["audio", "sse"], speed=1.0, pitch=1.0,
                             loudness_lufs=None)


class SpeechBody(BaseModel):
    """The fields design and clone share."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=_STREAMING)

    input: SpeechText
    language: str = "auto"
    response_format: AudioFormat | None = Field(None, description="Default: OUTPUT_FORMAT")
    speed: OpenAISpeed = 1.0
    pitch: float = Field(1.0, ge=0.5, le=2.0)
    sample_rate: OutputSampleRate | None = None
    loudness_lufs: float | None = Field(None, ge=-70.0, le=-5.0)
    seed: Seed | None = None
    max_new_tokens: MaxNewTokens | None = None
    min_frames: MinFrames | None = None
    normalize: Normalize = True
    input_format: InputFormat = Field("text", description=INPUT_FORMAT_DESCRIPTION)
    pronunciation_dictionaries: PronunciationDictionaries | None = Field(
        None, description=PRONUNCIATION_DESCRIPTION)
    timestamps: Timestamps = Field("none", description=TIMESTAMPS_DESCRIPTION)
    stream_format: Literal["audio", "sse"] | None = Field(
        None, description="Stream while generating: 'audio' (chunked bytes) or 'sse' (events)"
    )

    def render_options(self, default_format: AudioFormat) -> RenderOptions:
        fields = {k: getattr(self, k) for k in _RENDER_FIELDS}
        return RenderOptions(format=self.response_format or default_format, **fields)


class DesignBody(SpeechBody):
    description: str = Field(min_length=1, description="The voice to create")


class CloneBody(SpeechBody):
    """The clone fields besides reference_audio, which arrives as a file part or data URL."""

    model_config = ConfigDict(json_schema_extra={"allOf": [_STREAMING,
                                                           TRANSCRIPT_UNLESS_X_VECTOR]})

    ref_text: str | None = None
    x_vector_only: Flag = False
    consent: Flag = Field(False, description="The speaker consented to being cloned: "
                          "required when the tenant's one-shot consent is `recorded`")
    consent_code: str | None = Field(None, max_length=32, description=CONSENT_CODE_DESCRIPTION)
