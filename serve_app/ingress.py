"""The ingress deployment: every HTTP route and the handle API, over one SynthesisService.

HTTP: seed-compatible /api/*, OpenAI-compatible /v1/audio/speech and /v1/models, voice design
and cloning under /v1/audio/, /docs and /openapi.json. Handle API: the typed methods of
`TTSIngress` (custom_voice, voice_design, voice_clone, voices, health), taking and returning
the models in `serve_app.protocol.native`.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from ray import serve
from ray.serve.handle import DeploymentHandle
from starlette.exceptions import HTTPException as StarletteHTTPException

from deployments.logging_setup import configure_replica_logging, current_request_id
from deployments.metrics import tts_metrics
from serve_app import __version__
from serve_app.args import AppArgs
from serve_app.errors import ApiError, to_api_error
from serve_app.http_edge import EdgeMiddleware, error_response, route_path
from serve_app.protocol.native import (
    AudioOutput,
    AudioStreamChunk,
    CustomVoiceInput,
    VoiceCloneInput,
    VoiceDesignInput,
)
from serve_app.routes import clients, jobs, native, openai, ops, playground, seed, voices
from serve_app.routes.admin import create_admin_router
from serve_app.routes.common import REQUEST_ID_HEADER, bind_service, service
from serve_app.routes.speech_session import router as speech_session_router
from serve_app.speech_session import SessionEvent, SessionSettings, TextFeed, handle_session
from serve_app.tenancy import TenancyMiddleware, TenantService, platform

logger = logging.getLogger("qtts.ingress")


def _error_response(request: Request, error: ApiError) -> JSONResponse:
    return error_response(error, getattr(request.state, "request_id", None),
                          route_path(request.scope))


#: Starlette's own answers (no such route, method not allowed, ...) as envelope codes.
_HTTP_CODES = {400: "bad_request", 404: "not_found", 405: "method_not_allowed",
               413: "request_too_large", 415: "unsupported_media_type"}


def create_http_app() -> FastAPI:
    app = FastAPI(
        title="Qwen3-TTS Serve",
        version=__version__,
        description="Qwen3-TTS on Ray Serve: seed-compatible, OpenAI-compatible, design, clone.",
    )

    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> JSONResponse:
        return _error_response(request, exc)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0]
        loc = [str(p) for p in first.get("loc", ()) if p not in ("body", "query")]
        param = ".".join(loc) or "body"
        message = f"{param}: {first.get('msg', 'invalid value')}"
        limits = {k: v for k, v in (first.get("ctx") or {}).items() if k != "error"}
        if limits:  # e.g. le=4.0; a validator's own error is already the message
            message += f" ({', '.join(f'{k}={v}' for k, v in limits.items())})"
        return _error_response(request, ApiError(422, "invalid_value", message, param))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        """Routing and framework errors (404 no such route, 405, a malformed body) in the
        same envelope as every other error, never FastAPI's `{"detail": ...}`."""
        code = _HTTP_CODES.get(exc.status_code, "http_error")
        message = exc.detail if isinstance(exc.detail, str) else code.replace("_", " ")
        if exc.status_code == 404 and message == "Not Found":
            message = f"No route {request.method} {request.url.path}; see /docs."
        elif exc.status_code == 405:
            message = f"{request.method} is not allowed on {request.url.path}; see /docs."
        return _error_response(request, ApiError(exc.status_code, code, message, None,
                                                 dict(exc.headers or {})))

    @app.get("/", tags=["service"])
    async def root(request: Request) -> dict:
        return {
            "service": "Qwen3-TTS Serve",
            "version": __version__,
            "models": service().deployed_models,
            "docs": "/docs",
            "playground": "/playground",
            "endpoints": [
                "POST /api/tts/synthesize", "GET /api/health", "GET /api/voices",
                "POST /v1/audio/speech", "GET /v1/models",
                "POST /v1/audio/design", "POST /v1/audio/clone",
                "POST/GET /v1/voices", "GET/DELETE /v1/voices/{id}",
                "POST/GET /v1/jobs", "GET /v1/jobs/{id}", "GET /v1/jobs/{id}/audio",
                "GET /v1/usage", "/admin/...", "GET /livez", "GET /readyz",
            ],
        }

    for module in (seed, openai, native):
        app.include_router(module.router)
    app.include_router(ops.router)
    app.include_router(voices.router)  # the multi-tenant platform (serve_app.tenancy)
    app.include_router(jobs.router)
    app.include_router(speech_session_router)  # WebSocket /v1/audio/speech/stream
    app.include_router(clients.router)  # listings OpenAI-compatible clients read
    app.include_router(playground.router)  # the web playground (static files)
    app.include_router(create_admin_router(platform))
    app.add_middleware(TenancyMiddleware)  # API keys; inside the edge, so 401s are enveloped
    # request ids and the error envelope for everything inside (Serve's proxy echoes
    # X-Request-ID on every response); inside CORS, so errors carry CORS headers
    app.add_middleware(EdgeMiddleware, retry_after_s=lambda: service().args.ingress.retry_after_s)
    app.add_middleware(_ConfiguredCORS)
    return app


class _ConfiguredCORS:
    """CORS as configured in IngressArgs.cors_origins (off when the list is empty).

    The origins are only known once the replica's service is bound, hence built lazily."""

    def __init__(self, app):
        self.app = app
        self._cors = None

    async def __call__(self, scope, receive, send):
        if self._cors is None:
            origins = service().args.ingress.cors_origins
            self._cors = (
                CORSMiddleware(
                    self.app,
                    allow_origins=origins,
                    allow_methods=["*"],
                    allow_headers=["*"],
                    expose_headers=[REQUEST_ID_HEADER, "X-Audio-Duration", "X-Sample-Rate"],
                )
                if origins
                else self.app
            )
        await self._cors(scope, receive, send)


http_app = create_http_app()


@serve.deployment(
    ray_actor_options={"num_cpus": 1},
    max_ongoing_requests=256,
)
@serve.ingress(http_app)
class TTSIngress:
    def __init__(
        self,
        args: AppArgs,
        models: dict[str, DeploymentHandle],
        audio: DeploymentHandle,
    ):
        configure_replica_logging()
        self.service = TenantService(args, models, audio)  # SynthesisService + the platform
        bind_service(self.service)

    # ----------------------------------------------------------------- handle API (typed)
    async def custom_voice(self, request: CustomVoiceInput) -> AudioOutput:
        return await self._call(self.service.custom_voice, request)

    async def voice_design(self, request: VoiceDesignInput) -> AudioOutput:
        return await self._call(self.service.voice_design, request)

    async def voice_clone(self, request: VoiceCloneInput) -> AudioOutput:
        return await self._call(self.service.voice_clone, request)

    async def stream(
        self, request: CustomVoiceInput | VoiceDesignInput | VoiceCloneInput
    ) -> AsyncIterator[AudioStreamChunk]:
        """Any of the three operations, streamed: call it with
        `handle.options(stream=True).stream.remote(request)` and iterate. Chunks carry encoded
        bytes of one file in `request.output.format`; the last has final=True and usage.
        Request errors raise ApiError before the first chunk, as for the other methods."""
        request_id = current_request_id() or uuid.uuid4().hex
        retry_after = self.service.args.ingress.retry_after_s
        try:
            opened = await self.service.stream(request, request_id)
        except Exception as exc:  # noqa: BLE001 - the same ApiError as HTTP
            raise to_api_error(exc, retry_after_s=retry_after, request_id=request_id) from None
        try:
            async for piece in opened.chunks():
                yield piece
        except Exception as exc:  # noqa: BLE001 - mid-stream: log with the id, raise ApiError
            logger.error("request %s: stream failed mid-way: %s", request_id, type(exc).__name__)
            raise to_api_error(exc, retry_after_s=retry_after, request_id=request_id) from None

    async def speech_session(
        self, settings: SessionSettings, text: TextFeed | list[str]
    ) -> AsyncIterator[SessionEvent]:
        """The WebSocket session for Ray callers (docs/streaming.md): text pieces from a
        TextFeed (or a list), SessionAudio in order, then SessionDone; errors raise ApiError."""
        async for event in handle_session(self.service, settings, text):
            yield event

    async def voices(self) -> list[dict]:
        return [entry.__dict__ for entry in await self.service.voices()]

    async def health(self) -> dict:
        return await self.service.health()

    async def _call(self, operation, request) -> AudioOutput:
        request_id = current_request_id() or uuid.uuid4().hex  # Serve's id: the one in the logs
        try:
            return await operation(request, request_id)
        except Exception as exc:  # noqa: BLE001 - handle callers get the same ApiError as HTTP
            error = to_api_error(
                exc, retry_after_s=self.service.args.ingress.retry_after_s, request_id=request_id
            )
            tts_metrics().count_error(error.code, error.status)
            raise error from None
