"""The ingress deployment: every HTTP route and the handle API, over one SynthesisService.

HTTP: seed-compatible /api/*, OpenAI-compatible /v1/audio/speech and /v1/models, voice design
and cloning under /v1/audio/, saved voices, jobs, usage, admin, /docs and /openapi.json.
Handle API: the typed methods of `TTSIngress` (custom_voice, voice_design, voice_clone,
stream, speech_session, voices, health), taking and returning the models in
`serve_app.protocol.native`.

Each replica composes its parts once, in `TTSIngress.__init__`: the `Platform`, the
admission component over it, the SynthesisService with that admission, the saved-voice
resolver and the job runner. Its HTTP app is then built for it
(`__serve_build_asgi_app__`, Ray Serve's late-bound ingress app), with those parts in
`app.state` and the auth middleware handed the admission, so every route is bound to the
instance serving it (serve_app.routes.common) and nothing lives in a process-global slot.
"""

from __future__ import annotations

import dataclasses
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
from starlette.routing import Match

from deployments.logging_setup import configure_replica_logging, current_request_id
from deployments.metrics import tts_metrics
from serve_app import __version__
from serve_app.admission import TenantAdmission
from serve_app.api_contract import contract_openapi
from serve_app.args import AppArgs
from serve_app.auth_middleware import AuthMiddleware
from serve_app.errors import ApiError, invalid_field, to_api_error
from serve_app.http_edge import EdgeMiddleware, LoadShedding, error_response, route_path
from serve_app.incremental_speech import ReplicaTextRelay
from serve_app.job_synthesis import JobSynthesis
from serve_app.platform.service import Platform
from serve_app.protocol.native import (
    AudioOutput,
    AudioStreamChunk,
    CustomVoiceInput,
    VoiceCloneInput,
    VoiceDesignInput,
)
from serve_app.routes import (
    api_docs,
    clients,
    invoices,
    jobs,
    native,
    openai,
    ops,
    playground,
    seed,
    service_root,
    voices,
)
from serve_app.routes.admin import create_admin_router
from serve_app.routes.common import REQUEST_ID_HEADER, ReplicaServices
from serve_app.routes.speech_session import router as speech_session_router
from serve_app.saved_voices import SavedVoices
from serve_app.socket_gate import SocketGate
from serve_app.speech_session import SessionEvent, SessionSettings, TextFeed, handle_session
from serve_app.synthesis_service import SpeechInput, SynthesisService

logger = logging.getLogger("qtts.ingress")


def _error_response(request: Request, error: ApiError) -> JSONResponse:
    return error_response(error, getattr(request.state, "request_id", None),
                          route_path(request.scope))


#: Starlette's own answers (no such route, method not allowed, ...) as envelope codes.
_HTTP_CODES = {400: "bad_request", 404: "not_found", 405: "method_not_allowed",
               413: "request_too_large", 415: "unsupported_media_type"}


#: The methods a route of this app may take (what a 405's Allow can list).
_METHODS = ("DELETE", "GET", "PATCH", "POST", "PUT")


def allowed_methods(request: Request) -> list[str]:
    """Every method of the request's path, over all its routes (Starlette's 405 names only the
    first route's: POST on /v1/jobs, which takes GET too)."""
    routes = request.app.router.routes  # (FastAPI nests included routers: ask each method)
    return [method for method in _METHODS
            if any(route.matches({**request.scope, "method": method})[0] is Match.FULL
                   for route in routes)]


def create_http_app(replica: ReplicaServices) -> FastAPI:
    """The HTTP app of one replica, its routes reaching `replica` (serve_app.routes.common);
    without an admission component nothing is authenticated (the Ray-free route tests)."""
    app = FastAPI(
        title="Qwen3-TTS Serve",
        version=__version__,
        description="Qwen3-TTS on Ray Serve: seed-compatible, OpenAI-compatible, design, clone. "
                    "The WebSocket speech session (`/v1/audio/speech/stream`) and the admin API "
                    "(`/admin`) are described in [the guide](/docs/guide).",
        docs_url=None, redoc_url=None,  # served from local files: serve_app.routes.api_docs
    )
    args = replica.service.args
    if replica.socket_gate is None:
        replica = dataclasses.replace(replica, socket_gate=SocketGate(args.ingress))
    app.state.replica = replica

    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> JSONResponse:
        return _error_response(request, exc)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        # the same sentence as the WebSocket and the handle API (serve_app.errors)
        return _error_response(request, invalid_field(exc.errors()[0]))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        """Routing and framework errors (404 no such route, 405, a malformed body) in the
        same envelope as every other error, never FastAPI's `{"detail": ...}`."""
        code = _HTTP_CODES.get(exc.status_code, "http_error")
        message = exc.detail if isinstance(exc.detail, str) else code.replace("_", " ")
        if exc.status_code == 404 and message == "Not Found":
            message = f"No route {request.method} {request.url.path}; see /docs."
        headers = dict(exc.headers or {})
        if exc.status_code == 405:
            message = f"{request.method} is not allowed on {request.url.path}; see /docs."
            headers["Allow"] = ", ".join(allowed_methods(request))
        return _error_response(request, ApiError(exc.status_code, code, message, None, headers))

    deployed = replica.service.deployed_models
    app.openapi = lambda: contract_openapi(app, openai.allowed_models(deployed), args)  # type: ignore[method-assign]

    for module in (seed, openai, native):
        app.include_router(module.router)
    app.include_router(ops.router)
    app.include_router(voices.router)  # the multi-tenant platform (serve_app.platform)
    app.include_router(jobs.router)
    app.include_router(invoices.router)  # GET /v1/invoices (serve_app.platform.invoices)
    app.include_router(speech_session_router)  # WebSocket /v1/audio/speech/stream
    app.include_router(clients.router)  # listings OpenAI-compatible clients read
    app.include_router(playground.router)  # the web playground (static files)
    app.include_router(api_docs.router)  # /docs, /redoc, /docs/guide: no CDN
    app.include_router(service_root.router)  # GET /: JSON, or a landing page for a browser
    if replica.admission is not None:
        platform = replica.admission.platform
        app.include_router(create_admin_router(lambda: platform))
        # API keys; inside the edge, so 401s are enveloped
        app.add_middleware(AuthMiddleware, admission=replica.admission)
    # a full replica refuses synthesis before authentication (inside the edge: enveloped)
    app.add_middleware(LoadShedding, check=replica.service.check_capacity)
    # request ids and the error envelope for everything inside (Serve's proxy echoes
    # X-Request-ID on every response); inside CORS, so errors carry CORS headers
    app.add_middleware(EdgeMiddleware, retry_after_s=lambda: args.ingress.retry_after_s)
    if args.ingress.cors_origins:  # IngressArgs.cors_origins; off when empty
        app.add_middleware(
            CORSMiddleware, allow_origins=args.ingress.cors_origins, allow_methods=["*"],
            allow_headers=["*"],
            expose_headers=[REQUEST_ID_HEADER, "X-Audio-Duration", "X-Sample-Rate"])
    return app


@serve.deployment(
    ray_actor_options={"num_cpus": 1},
    max_ongoing_requests=1024,  # well above IngressArgs.socket_budget: see the profiles
)
@serve.ingress()  # the HTTP app is built in each replica, for it: __serve_build_asgi_app__
class TTSIngress:
    async def __init__(
        self,
        args: AppArgs,
        models: dict[str, DeploymentHandle],
        audio: DeploymentHandle,
    ):
        configure_replica_logging()
        platform = Platform.open(args.platform)
        logger.info("platform: %r", platform)
        self.admission = TenantAdmission(platform)
        self.service = SynthesisService(args, models, audio, self.admission)
        # (not `self.voices`: that name is a handle method)
        self.saved_voices = SavedVoices(self.admission, self.service)
        self.job_synthesis = JobSynthesis(self.service, self.admission, self.saved_voices)
        self.job_synthesis.start()  # this replica's job runner, in its event loop
        self.text_relay = ReplicaTextRelay()  # incremental speech sessions' text

    def __serve_build_asgi_app__(self) -> FastAPI:
        return create_http_app(ReplicaServices(self.service, self.admission, self.saved_voices,
                                               self.job_synthesis, self.text_relay))

    # ----------------------------------------------------------------- handle API (typed)
    async def custom_voice(self, request: CustomVoiceInput) -> AudioOutput:
        """A preset speaker, or a saved voice of the handle tenant named as `speaker`."""
        return await self._call(request)

    async def voice_design(self, request: VoiceDesignInput) -> AudioOutput:
        return await self._call(request)

    async def voice_clone(self, request: VoiceCloneInput) -> AudioOutput:
        return await self._call(request)

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
            opened = await self.service.stream(await self._edge(request), request_id)
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
        async for event in handle_session(self.service, settings, text, self.saved_voices,
                                          self.text_relay):
            yield event

    async def voices(self) -> list[dict]:
        return [entry.__dict__ for entry in await self.service.voices()]

    async def health(self) -> dict:
        return await self.service.health()

    async def _edge(self, request: SpeechInput) -> SpeechInput:
        """The handle API's edge: a saved voice named as a CustomVoice `speaker` is resolved
        here, once, into its VoiceRef."""
        if isinstance(request, CustomVoiceInput):
            return await self.saved_voices.speech(request)
        return request

    async def _call(self, request: SpeechInput) -> AudioOutput:
        request_id = current_request_id() or uuid.uuid4().hex  # Serve's id: the one in the logs
        try:
            return await self.service.synthesize(await self._edge(request), request_id)
        except Exception as exc:  # noqa: BLE001 - handle callers get the same ApiError as HTTP
            error = to_api_error(
                exc, retry_after_s=self.service.args.ingress.retry_after_s, request_id=request_id
            )
            tts_metrics().count_error(error.code, error.status)
            raise error from None
