"""Async jobs' request body (POST /v1/jobs) and the usage period (GET /v1/usage)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from deployments.audio.formats import AudioFormat
from serve_app.app.args import VOICE_DESIGN
from serve_app.protocol.fields import (
    INPUT_FORMAT_DESCRIPTION,
    NOT_BLANK,
    PRONUNCIATION_DESCRIPTION,
    InputFormat,
    MaxNewTokens,
    Normalize,
    OpenAISpeed,
    OutputSampleRate,
    PronunciationDictionaries,
    Seed,
    SpeechText,
    Timestamps,
)

#: `period` of GET /v1/usage: month | day | YYYY-MM | YYYY-MM-DD (a date that does not exist,
#: e.g. 2026-02-30, is still refused by the platform).
PERIOD_PATTERN = r"^(month|day|[1-9][0-9]{3}-(0[1-9]|1[0-2])(-(0[1-9]|[12][0-9]|3[01]))?)$"


class JobBody(BaseModel):
    # VoiceDesign speaks from a description, every other model from a voice (a preset, an
    # OpenAI voice or a saved voice)
    model_config = ConfigDict(extra="forbid", json_schema_extra={
        "if": {"properties": {"model": {"const": VOICE_DESIGN}}, "required": ["model"]},
        "then": {"anyOf": [{"required": [field], "properties": {field: NOT_BLANK}}
                           for field in ("description", "instructions")]},
        "else": {"required": ["voice"], "properties": {"voice": NOT_BLANK}},
    })

    model: str = Field("tts-1", description="CustomVoice, VoiceDesign, VoiceClone or an alias")
    input: SpeechText = Field(description="The text; long text is split and joined (SSML: "
                              "at the parsed document's <p>, <s> and sentence ends)")
    input_format: InputFormat = Field("text", description=INPUT_FORMAT_DESCRIPTION)
    voice: str | None = Field(None, description="Preset speaker, OpenAI voice or saved voice id")
    instructions: str | None = None
    description: str | None = Field(None, description="VoiceDesign: the voice to create")
    language: str = "auto"
    seed: Seed | None = None
    max_new_tokens: MaxNewTokens | None = Field(None, description="Cap per segment")
    normalize: Normalize = True
    pronunciation_dictionaries: PronunciationDictionaries | None = Field(
        None, description=PRONUNCIATION_DESCRIPTION)
    timestamps: Timestamps = Field("word", description="'word' (default): the words' "
                                   "timestamps are stored with the result, for its captions "
                                   "(GET /v1/jobs/{id}/captions.vtt, .srt); 'none'")
    response_format: AudioFormat = AudioFormat.MP3
    speed: OpenAISpeed = 1.0
    sample_rate: OutputSampleRate | None = None
    webhook_url: str | None = Field(None, max_length=2000)
    webhook_secret: str | None = Field(None, max_length=200)
