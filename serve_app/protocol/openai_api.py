"""OpenAI's audio API shapes (POST /v1/audio/speech, GET /v1/models)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from deployments.audio.formats import AudioFormat
from serve_app.protocol.fields import (
    INPUT_FORMAT_DESCRIPTION,
    PRONUNCIATION_DESCRIPTION,
    TIMESTAMPS_DESCRIPTION,
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

#: OpenAI model names served by CustomVoice.
OPENAI_MODEL_ALIASES = ("tts-1", "tts-1-hd", "gpt-4o-mini-tts")


class SpeechRequest(BaseModel):
    # the SDK may add fields we do not use
    model_config = ConfigDict(extra="ignore", json_schema_extra=streaming_keeps(
        "stream_format", ["audio", "sse"], speed=1.0))

    model: str = Field(description="CustomVoice, VoiceDesign, or tts-1 / tts-1-hd / gpt-4o-mini-tts")
    input: SpeechText
    voice: str | dict = Field(description="Preset speaker or OpenAI voice name")
    instructions: str | None = None
    response_format: AudioFormat = AudioFormat.MP3
    speed: OpenAISpeed = 1.0
    stream_format: Literal["audio", "sse"] | None = Field(
        None, description="Stream while generating: 'audio' (chunked bytes) or 'sse' (events); "
        "omitted: the whole file at once"
    )
    # extensions
    language: str = "auto"
    seed: Seed | None = None
    sample_rate: OutputSampleRate | None = None
    max_new_tokens: MaxNewTokens | None = None
    min_frames: MinFrames | None = None
    normalize: Normalize = True
    input_format: InputFormat = Field("text", description=INPUT_FORMAT_DESCRIPTION)
    pronunciation_dictionaries: PronunciationDictionaries | None = Field(
        None, description=PRONUNCIATION_DESCRIPTION)
    timestamps: Timestamps = Field("none", description=TIMESTAMPS_DESCRIPTION + "; not "
                                   "streamed: a JSON body (audio base64, words, source); "
                                   "SSE: a speech.alignment event after the audio")


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int = 0
    owned_by: str = "qwen3-tts-serve"


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]
