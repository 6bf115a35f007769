"""The seed service's API, field for field: the existing Go worker works unchanged.

POST /api/tts/synthesize, GET /api/health, GET /api/voices, GET /api/tts/audio/{id}
(the `audio_url` of a synthesis, served from the result cache while it is there).
"""

from __future__ import annotations

import base64

from fastapi import APIRouter, Request
from fastapi.responses import Response, StreamingResponse

from deployments.audio import RenderOptions
from serve_app.edge.api_errors import ApiError
from serve_app.platform.keys import admin_token_sent
from serve_app.protocol.seed_api import (
    SeedHealthResponse,
    SeedSynthesizeRequest,
    SeedSynthesizeResponse,
    SeedVoice,
    SeedVoicesResponse,
)
from serve_app.routes.common import rid, selector, service
from serve_app.routes.contract import audio_content, errors
from serve_app.routes.stream_responses import audio_stream_response
from serve_app.synthesis.voice_selector import SPEAKER_FIELDS, VoiceRequest

router = APIRouter(prefix="/api", tags=["seed-compatible"])


@router.post(
    "/tts/synthesize",
    response_model=SeedSynthesizeResponse,
    responses={200: audio_content("JSON; with enable_streaming=true a chunked audio stream "
                                  "in OUTPUT_FORMAT (see docs/streaming.md)"),
               **errors(400, 404, 422, 429, 503, 504)},
)
async def synthesize(
    body: SeedSynthesizeRequest, request: Request
) -> SeedSynthesizeResponse | StreamingResponse:
    svc = service(request)
    common = {"language": body.language, "seed": body.seed, "normalize": body.normalize,
              "input_format": body.input_format,
              "pronunciation_dictionaries": body.pronunciation_dictionaries,
              "output": RenderOptions(format=svc.args.audio.default_format,
                                      sample_rate=svc.args.audio.default_sample_rate,
                                      speed=body.speed, pitch=body.pitch)}
    choice = await selector(request).select(VoiceRequest(  # a preset, or a saved voice
        voice=body.speaker, instructions=body.instruct, language=body.language,
        fields=SPEAKER_FIELDS))
    inp = choice.input(body.text, **common)
    if body.enable_streaming:  # chunked audio in OUTPUT_FORMAT instead of JSON
        return audio_stream_response(await svc.stream(inp, rid(request)))
    out = await svc.synthesize(inp, rid(request))
    return SeedSynthesizeResponse(
        success=True,
        audio_base64=base64.b64encode(out.audio).decode(),
        audio_url=f"/api/tts/audio/{out.cache_key}" if out.cache_key else None,
        duration=round(out.duration_seconds, 3),
        sample_rate=out.sample_rate,
        processing_time=round(out.processing_seconds, 3),
        message="cached" if out.cached else "ok",
    )


@router.get("/tts/audio/{key}", response_class=Response,
            responses={200: audio_content("The audio of that synthesis, in OUTPUT_FORMAT")})
async def cached_audio(key: str, request: Request) -> Response:
    svc = service(request)
    out = svc.cached(key, await svc.cache_scope())
    if out is None:
        raise ApiError(404, "not_found", "This audio is no longer cached; synthesize it again.", "key")
    return Response(content=out.audio, media_type=out.content_type)


@router.get("/health", response_model=SeedHealthResponse)
async def health(request: Request) -> SeedHealthResponse:
    """Public: the seed's fields and each deployment's status. With the admin token
    (`Authorization: Bearer <ADMIN_TOKEN>`): replicas, model paths, load times, slots."""
    svc = service(request)
    detailed = admin_token_sent(request.headers, svc.args.platform.admin_token)
    return SeedHealthResponse(**await svc.health(detailed=detailed))


@router.get("/voices", response_model=SeedVoicesResponse)
async def voices(request: Request) -> SeedVoicesResponse:
    entries = await service(request).voices()
    return SeedVoicesResponse(voices=[SeedVoice(**e.__dict__) for e in entries])
