"""The HTTP app of one ingress replica: its routes, the error handlers, the middleware.

`create_http_app(replica)` is called by each `TTSIngress` replica
(`__serve_build_asgi_app__`, serve_app.app.ingress) with the parts that replica composed
(`ReplicaServices`, serve_app.routes.common), so every route reaches the services of the
instance serving it. The layers a request passes, outside in: CORS, the edge
(serve_app.edge.http_edge: request id, the one error renderer), load shedding, the auth
middleware (serve_app.edge.auth_middleware), then the route.
"""

from __future__ import annotations

import dataclasses

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from serve_app import __version__
from serve_app.edge.api_errors import ApiError, invalid_field
from serve_app.edge.auth_middleware import AuthMiddleware
from serve_app.edge.http_edge import EdgeMiddleware, LoadShedding, error_response, route_path
from serve_app.edge.socket_gate import SocketGate
from serve_app.routes import (
    analyze,
    api_docs,
    clients,
    design_clone,
    dictionaries,
    jobs_usage,
    openai,
    ops,
    playground,
    seed,
    service_root,
    speech_stream,
    tenant_invoices,
    verify,
    voice_library,
)
from serve_app.routes.admin import create_admin_router
from serve_app.routes.common import REQUEST_ID_HEADER, ReplicaServices
from serve_app.routes.contract import contract_openapi
from serve_app.synthesis import catalog
from serve_app.synthesis.voice_selector import VoiceSelector


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
    if replica.selector is None:  # no saved voices without a platform: presets only
        replica = dataclasses.replace(replica, selector=VoiceSelector(replica.service))
    app.state.replica = replica

    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> JSONResponse:
        return _error_response(request, exc)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        # the same sentence as the WebSocket and the handle API (serve_app.edge.api_errors)
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
    app.openapi = lambda: contract_openapi(app, catalog.allowed_models(deployed), args)  # type: ignore[method-assign]

    for module in (seed, openai, design_clone):
        app.include_router(module.router)
    app.include_router(ops.router)
    app.include_router(voice_library.router)  # the multi-tenant platform (serve_app.platform)
    app.include_router(dictionaries.router)  # /v1/pronunciation-dictionaries
    app.include_router(jobs_usage.router)
    app.include_router(verify.router)  # POST /v1/audio/verify: an output's AI-generated mark
    app.include_router(analyze.router)  # POST /v1/audio/analyze: the speech a recording holds
    app.include_router(tenant_invoices.router)  # GET /v1/invoices (serve_app.platform.invoices)
    app.include_router(speech_stream.router)  # WebSocket /v1/audio/speech/stream
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
