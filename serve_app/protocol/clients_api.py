"""The listings OpenAI-compatible TTS clients read (GET /v1/audio/models, /v1/audio/voices),
in Open WebUI's shapes (docs/clients.md)."""

from __future__ import annotations

from pydantic import BaseModel


class AudioModel(BaseModel):
    id: str
    name: str


class AudioModelList(BaseModel):
    models: list[AudioModel]


class AudioVoice(BaseModel):
    id: str  # what to send as `voice`
    name: str
    kind: str  # "preset" | "openai" | "saved"


class AudioVoiceList(BaseModel):
    voices: list[AudioVoice]
