"""Authentication of every HTTP request but the public ones (serve_app.edge.path_table).

Pure ASGI, inside the HTTP edge (so its 401/403 are rendered in the error envelope):
`Authorization: Bearer <key>` or `X-API-Key` becomes the request's `Caller`
(serve_app.edge.request_context) for the routes; the X-RateLimit-* headers its admission set are
added to the response. WebSockets pass through: a speech session authenticates itself.

Routing comes first: a request that no route takes as it is (an unknown path, a trailing
slash the router redirects, a method the route does not allow) goes on without a key, so the
router answers it (404, 307, 405) as it would with one; only a request some route would
serve is authenticated. Those answers name nothing that /openapi.json does not.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from starlette.routing import Match

from serve_app.edge.http_edge import route_path
from serve_app.edge.path_table import endpoint_of, is_public
from serve_app.edge.request_context import acting_as
from serve_app.platform.keys import Principal


class Authenticator(Protocol):
    """What the middleware asks (serve_app.synthesis.admission.TenantAdmission is one): the
    principal of a request's key, or an ApiError (401, 403, 429)."""

    async def authenticate(self, path: str, headers: Mapping[str, str],
                           client_host: str | None) -> Principal: ...


class AuthMiddleware:
    def __init__(self, app, admission: Authenticator):
        self.app = app
        self._admission = admission

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path = route_path(scope)
        if (is_public(path) or scope.get("method") == "OPTIONS"
                or not routed(scope)):
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        principal = await self._admission.authenticate(
            path, headers, (scope.get("client") or (None,))[0])

        with acting_as(principal, endpoint_of(path)) as caller:
            async def send_with_limits(message):
                if message["type"] == "http.response.start" and caller.headers:
                    present = {k.lower() for k, _ in message.get("headers", [])}
                    extra = [(k.lower().encode("latin-1"), v.encode("latin-1"))
                             for k, v in caller.headers.items()
                             if k.lower().encode("latin-1") not in present]
                    message = {**message, "headers": [*message.get("headers", []), *extra]}
                await send(message)

            await self.app(scope, receive, send_with_limits)


def routed(scope) -> bool:
    """Whether a route of the app (Starlette sets `scope["app"]`) serves this request as it
    is: method and path, no redirect. Without an app in the scope, every request is."""
    app = scope.get("app")
    router = getattr(app, "router", None)
    if router is None:
        return True
    return any(route.matches(scope)[0] == Match.FULL for route in router.routes)
