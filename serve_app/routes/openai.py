"""OpenAI-compatible speech: POST /v1/audio/speech and GET /v1/models.

`model` takes a deployment name (case-insensitive) or OpenAI's tts-1 / tts-1-hd /
gpt-4o-mini-tts (aliases of CustomVoice); `voice` takes a preset speaker or an OpenAI voice
name (mapping in serve_app.synthesis.catalog.OPENAI_VOICES). With VoiceDesign, `instructions` is the
voice description; a saved voice's id or name as `voice` speaks with VoiceClone from its
stored prompt. The official openai SDK works against it unchanged.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from deployments.audio import RenderOptions
from serve_app.app.args import CUSTOM_VOICE, VOICE_CLONE, VOICE_DESIGN
from serve_app.edge.api_errors import invalid
from serve_app.protocol.openai_api import ModelCard, ModelList, SpeechRequest
from serve_app.protocol.speech import CustomVoiceInput, SavedVoiceInput, VoiceDesignInput
from serve_app.routes.common import lookup_voice, service, speech_response
from serve_app.routes.contract import audio_content, errors
from serve_app.synthesis import catalog

router = APIRouter(prefix="/v1", tags=["openai-compatible"])


def _voice_name(voice: str | dict) -> str:
    if isinstance(voice, dict):
        voice = voice.get("id") or voice.get("name") or ""
    return str(voice)


@router.post("/audio/speech", response_class=Response, responses={
    200: audio_content("The audio in response_format; streamed with stream_format", sse=True),
    **errors(400, 404, 422, 429, 503, 504)})
async def speech(body: SpeechRequest, request: Request) -> Response:
    svc = service(request)
    model = catalog.resolve_model(body.model, svc.deployed_models)
    svc.instruction("instructions", body.instructions)  # named as this API names it
    common = {"text": body.input, "language": body.language, "seed": body.seed,
              "max_new_tokens": body.max_new_tokens, "min_frames": body.min_frames,
              "output": RenderOptions(format=body.response_format, speed=body.speed,
                                      sample_rate=body.sample_rate)}
    voice = None if model == VOICE_DESIGN else await lookup_voice(request, _voice_name(body.voice))
    if voice is not None:  # a tenant's saved voice: VoiceClone with its prompt
        inp = SavedVoiceInput(voice=voice, **common)
    elif model == VOICE_CLONE:
        raise invalid(
            "model",
            "VoiceClone needs reference audio: use POST /v1/audio/clone",
            "unsupported_value",
        )
    elif model == VOICE_DESIGN:
        if not (body.instructions or "").strip():
            raise invalid("instructions", "VoiceDesign needs instructions: the voice description")
        inp = VoiceDesignInput(description=body.instructions, **common)
    else:
        info = await svc.model_info(CUSTOM_VOICE)
        speaker = catalog.resolve_speaker(_voice_name(body.voice), info, param="voice",
                                          openai_names=True)
        inp = CustomVoiceInput(speaker=speaker, instruct=body.instructions, **common)
    return await speech_response(request, inp, body.stream_format)


@router.get("/models", response_model=ModelList)
async def models(request: Request) -> ModelList:
    return ModelList(data=[ModelCard(id=i) for i in catalog.allowed_models(service(request).deployed_models)])
