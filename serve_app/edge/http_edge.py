"""The HTTP edge of the ingress: one request id and one error renderer for every route.

`EdgeMiddleware` (pure ASGI, outside authentication) gives each request its id and turns any
exception that escapes a route or the auth layer into the error envelope, once. A failure
after the response has started (a stream cut short) is re-raised instead: the server then
drops the connection without the terminating chunk, so a client sees a truncated transfer,
never a short file that looks complete, and Serve's access log says `200 aborted` for it
(deployments.logging_setup.mark_aborted). (Starlette's BaseHTTPMiddleware, used here before,
ended such a stream with the normal terminating chunk.)
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable

from starlette.responses import JSONResponse

from deployments.logging_setup import current_request_id, mark_aborted
from deployments.metrics import tts_metrics
from serve_app.edge.api_errors import ApiError, to_api_error
from serve_app.edge.path_table import SYNTHESIS_PATHS

REQUEST_ID_HEADER = "X-Request-ID"
_SAFE_ID = re.compile(r"^[A-Za-z0-9._\-]{1,64}$")


def request_id_of(scope) -> str:
    """The request's id: Serve's proxy puts the caller's X-Request-ID (or a new one) in the
    headers and echoes it on the response; an id unsafe to log is replaced here."""
    wanted = REQUEST_ID_HEADER.lower().encode("latin-1")
    for name, value in scope.get("headers", ()):
        if name.lower() == wanted:
            supplied = value.decode("latin-1")
            return supplied if _SAFE_ID.match(supplied) else uuid.uuid4().hex
    return uuid.uuid4().hex


def route_path(scope) -> str:
    """The path below the application's route prefix (`/api/health` of `/edge/api/health`
    when the app is served under /edge): what the public, seed and error-shape rules use."""
    path, root = scope.get("path", ""), scope.get("root_path", "")
    return path[len(root):] if root and path.startswith(root) else path


def error_response(error: ApiError, request_id: str | None, path: str) -> JSONResponse:
    """The one rendering of an ApiError as an HTTP answer (see ApiError.body)."""
    tts_metrics().count_error(error.code, error.status)
    return JSONResponse(error.body(request_id, path), status_code=error.status,
                        headers=error.headers)


class EdgeMiddleware:
    def __init__(self, app, retry_after_s: Callable[[], int]):
        self.app = app
        self._retry_after_s = retry_after_s

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        request_id = request_id_of(scope)
        scope.setdefault("state", {})["request_id"] = request_id
        started = False

        async def tracking_send(message):
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception as exc:  # noqa: BLE001 - every failure leaves as an ApiError
            if started:  # mid-response: abort the transfer (see the module docstring)
                mark_aborted(current_request_id())
                raise
            error = to_api_error(exc, retry_after_s=self._retry_after_s(), request_id=request_id)
            await error_response(error, request_id, route_path(scope))(scope, receive, send)


class LoadShedding:
    """A synthesis request that comes while the replica is full is refused (503 +
    Retry-After, rendered by EdgeMiddleware) before anything else: before its key is checked
    or its body read, so under overload a refusal costs microseconds, not a place in the
    thread pool that authentication and usage share. `check()` raises the refusal."""

    def __init__(self, app, check: Callable[[], None]):
        self.app = app
        self._check = check

    async def __call__(self, scope, receive, send):
        if (scope["type"] == "http" and scope.get("method") == "POST"
                and route_path(scope) in SYNTHESIS_PATHS):
            self._check()
        return await self.app(scope, receive, send)
