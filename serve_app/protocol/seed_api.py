"""The seed service's wire format, field for field (the Go worker depends on it)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from serve_app.protocol.fields import (
    INPUT_FORMAT_DESCRIPTION,
    PRONUNCIATION_DESCRIPTION,
    Flag,
    InputFormat,
    Normalize,
    PronunciationDictionaries,
    Seed,
    SpeechText,
    streaming_keeps,
)


class SeedSynthesizeRequest(BaseModel):
    # the seed ignored unknown fields too
    model_config = ConfigDict(extra="ignore", json_schema_extra=streaming_keeps(
        "enable_streaming", True, speed=1.0, pitch=1.0))

    text: SpeechText = Field(description="1 to max_text_chars (5000) characters")
    language: str = Field("auto", description="zh, en, ja, ko, de, fr, ru, pt, es, it, auto")
    speaker: str = Field("Vivian", description="A preset speaker, see GET /api/voices")
    instruct: str | None = Field(None, description="Style instruction (1.7B CustomVoice)")
    speed: float = Field(1.0, ge=0.5, le=2.0)
    pitch: float = Field(1.0, ge=0.5, le=2.0)
    enable_streaming: Flag = Field(
        False, description="true: the response is a chunked audio stream (OUTPUT_FORMAT, "
        "SAMPLE_RATE) sent while generating, instead of JSON"
    )
    seed: Seed | None = Field(None, description="Extension: reproducible output")
    normalize: Normalize = True
    input_format: InputFormat = Field("text", description=INPUT_FORMAT_DESCRIPTION)
    pronunciation_dictionaries: PronunciationDictionaries | None = Field(
        None, description=PRONUNCIATION_DESCRIPTION)


class SeedSynthesizeResponse(BaseModel):
    success: bool
    audio_base64: str | None
    audio_url: str | None
    duration: float
    sample_rate: int
    processing_time: float
    message: str


class SeedHealthResponse(BaseModel):
    status: str
    model_loaded: bool
    device: str
    concurrent_tasks: int
    uptime_seconds: float
    deployments: dict[str, dict] = Field(default_factory=dict)


class SeedVoice(BaseModel):
    id: str
    name: str
    language: str
    gender: str
    description: str


class SeedVoicesResponse(BaseModel):
    voices: list[SeedVoice]
