"""The typed operations shared by the handle API and the HTTP routes.

A Python caller holding the ingress handle sends these models and gets `AudioOutput` back;
each HTTP surface translates its own wire format into them, so validation and behaviour are
defined once.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator

from deployments.audio import RenderOptions
from deployments.audio.formats import AudioFormat

SEED_MAX = 2**32 - 1


class _Input(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    text: str = Field(min_length=1, description="Text to speak (at most max_text_chars)")
    language: str = Field("auto", description="auto, a code (zh, en, ...) or a model language name")
    seed: int | None = Field(None, ge=0, le=SEED_MAX, description="Same seed + inputs -> same audio")
    output: RenderOptions = Field(default_factory=RenderOptions)

    @field_validator("text")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("text must contain something to speak")
        return value


class CustomVoiceInput(_Input):
    speaker: str = Field(description="A preset speaker (e.g. Vivian), case-insensitive")
    instruct: str | None = Field(None, description="Natural-language style instruction")


class VoiceDesignInput(_Input):
    description: str = Field(min_length=1, description="The voice to create, in natural language")


class VoiceCloneInput(_Input):
    reference_audio: bytes = Field(description="Encoded audio file (wav, flac, mp3, ogg, m4a, ...)")
    ref_text: str | None = Field(None, description="Transcript of the reference (ICL mode)")
    x_vector_only: bool = Field(False, description="Clone from the speaker embedding only")


class AudioOutput(BaseModel):
    model_config = ConfigDict(frozen=True)

    audio: bytes
    format: AudioFormat
    content_type: str
    sample_rate: int
    duration_seconds: float
    processing_seconds: float
    request_id: str
    cached: bool = False
    cache_key: str | None = None
