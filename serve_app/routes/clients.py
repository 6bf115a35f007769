"""Listings that OpenAI-compatible TTS clients ask for: GET /v1/audio/models, GET /v1/audio/voices.

Open WebUI (backend/open_webui/routers/audio.py) reads `{"models": [{"id": ...}]}` from
`{base}/audio/models` and `{"voices": [{"id", "name"}]}` from `{base}/audio/voices`, and it
calls both WITHOUT an API key; Home Assistant's openai_tts calls `{speech_url}/../voices` with
its key and `?limit=100`; Marinara adds `?model=`. So both listings are public paths
(serve_app.edge.path_table.PUBLIC_PATHS): without a key they list the presets and the OpenAI names;
with a valid key they add the caller's tenant's saved voices (a wrong key is still a 401).
Query parameters are accepted and ignored. What each client sends and needs: docs/clients.md.
"""

from __future__ import annotations

from fastapi import APIRouter, Request

from serve_app.app.args import CUSTOM_VOICE
from serve_app.protocol.clients_api import AudioModel, AudioModelList, AudioVoice, AudioVoiceList
from serve_app.routes.common import admission, service
from serve_app.routes.contract import KEY_OPTIONAL
from serve_app.routes.openai import models as openai_models
from serve_app.synthesis import catalog

router = APIRouter(prefix="/v1/audio", tags=["client compatibility"])

@router.get("/models", response_model=AudioModelList)
async def audio_models(request: Request) -> AudioModelList:
    """The same ids as GET /v1/models (one list), in Open WebUI's shape."""
    listed = await openai_models(request)
    return AudioModelList(models=[AudioModel(id=m.id, name=m.id) for m in listed.data])


@router.get("/voices", response_model=AudioVoiceList, openapi_extra={"security": KEY_OPTIONAL})
async def audio_voices(request: Request) -> AudioVoiceList:
    """Presets (by display name), the OpenAI voice names, then the caller's saved voices."""
    svc, gate = service(request), admission(request)
    voices: list[AudioVoice] = []
    if CUSTOM_VOICE in svc.deployed_models:
        info = await svc.model_info(CUSTOM_VOICE)
        voices += [AudioVoice(id=e.id, name=e.name, kind="preset")
                   for e in catalog.voice_entries(info)]
        voices += [AudioVoice(id=name, name=f"{name} ({catalog.display_name(speaker)})",
                              kind="openai")
                   for name, speaker in catalog.OPENAI_VOICES.items() if speaker in info.speakers]
    principal = await gate.optional_principal(request.headers)
    if principal is not None:
        saved = await gate.platform.list_voices(principal)
        voices += [AudioVoice(id=v.id, name=v.name, kind="saved") for v in saved]
    return AudioVoiceList(voices=voices)
