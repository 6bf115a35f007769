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
from serve_app.protocol.openai_api import ModelCard, ModelList, SpeechRequest
from serve_app.protocol.timestamps import TimedAudio
from serve_app.routes.common import selector, service, speech_response
from serve_app.routes.contract import audio_content, errors
from serve_app.synthesis import catalog
from serve_app.synthesis.voice_selector import OPENAI_FIELDS, VoiceRequest

router = APIRouter(prefix="/v1", tags=["openai-compatible"])


def _voice_name(voice: str | dict) -> str:
    if isinstance(voice, dict):
        voice = voice.get("id") or voice.get("name") or ""
    return str(voice)


@router.post("/audio/speech", response_class=Response, responses={
    200: audio_content("The audio in response_format; streamed with stream_format; with "
                       "timestamps 'word' (not streamed) JSON with the audio and its words",
                       sse=True, json_model=TimedAudio),
    **errors(400, 404, 422, 429, 503, 504)})
async def speech(body: SpeechRequest, request: Request) -> Response:
    choice = await selector(request).select(VoiceRequest(
        model=body.model, voice=_voice_name(body.voice), instructions=body.instructions,
        language=body.language, fields=OPENAI_FIELDS))
    inp = choice.input(
        body.input, language=body.language, seed=body.seed, max_new_tokens=body.max_new_tokens,
        min_frames=body.min_frames, normalize=body.normalize, input_format=body.input_format,
        pronunciation_dictionaries=body.pronunciation_dictionaries,
        timestamps=body.timestamps, output=RenderOptions(
            format=body.response_format, speed=body.speed, sample_rate=body.sample_rate))
    return await speech_response(request, inp, body.stream_format)


@router.get("/models", response_model=ModelList)
async def models(request: Request) -> ModelList:
    return ModelList(data=[ModelCard(id=i) for i in catalog.allowed_models(service(request).deployed_models)])
