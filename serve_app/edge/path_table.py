"""The path table: which paths are open without a key, and which endpoint family (the name a
key can be scoped to, serve_app.platform.keys) every other path belongs to."""

from __future__ import annotations

from collections.abc import Mapping

#: Open without a key: the service root, API docs, probes and the seed's health check.
PUBLIC_PATHS = frozenset({
    "/", "/docs", "/docs/oauth2-redirect", "/docs/guide", "/redoc", "/openapi.json",
    "/livez", "/readyz", "/api/health", "/metrics",
    "/v1/audio/models", "/v1/audio/voices",  # Open WebUI lists without a key (routes/clients.py)
    "/playground", "/playground/playground.js", "/playground/playground.css",
})
#: Open below these prefixes: files served by name from the package (an unknown name is 404).
PUBLIC_PREFIXES = ("/docs/assets/", "/playground/")

#: Path prefix -> the endpoint family a key can be scoped to.
ENDPOINT_PREFIXES = (
    ("/api/tts/", "synthesize"), ("/v1/audio/speech", "speech"), ("/v1/audio/design", "design"),
    ("/v1/audio/clone", "clone"), ("/v1/voices", "voices"), ("/v1/jobs", "jobs"),
    ("/v1/usage", "usage"), ("/v1/invoices", "usage"), ("/v1/audit", "usage"),
    ("/v1/pronunciation-dictionaries", "dictionaries"),
)
#: The family of a path none of the prefixes names (the seed's other routes, /v1/models).
DEFAULT_ENDPOINT = "synthesize"

#: The routes that synthesize: refused before any other step when the replica is full
#: (serve_app.edge.http_edge.LoadShedding).
SYNTHESIS_PATHS = frozenset({"/api/tts/synthesize", "/v1/audio/speech", "/v1/audio/design",
                             "/v1/audio/clone"})

#: The seed service's routes: the only ones a trusted network may call without a key.
SEED_PREFIX = "/api/"

CREDENTIAL_HEADERS = ("authorization", "x-api-key")


def endpoint_of(path: str) -> str:
    for prefix, name in ENDPOINT_PREFIXES:
        if path.startswith(prefix):
            return name
    return DEFAULT_ENDPOINT


def is_public(path: str) -> bool:
    """/admin has its own guard (ADMIN_TOKEN, serve_app.routes.admin)."""
    return (path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES)
            or path.startswith("/admin/") or path == "/admin")


def sends_credentials(headers: Mapping[str, str]) -> bool:
    return bool({k.lower() for k in headers} & set(CREDENTIAL_HEADERS))


def keyless_seed_call(path: str, headers: Mapping[str, str]) -> bool:
    """A call to a seed route with no credentials at all (a wrong key is still a 401)."""
    return path.startswith(SEED_PREFIX) and not sends_credentials(headers)
