"""`GET /`: what this server is. A browser (Accept: text/html) gets a small landing page (what
this is, the playground, the docs, where keys come from); an API client gets the JSON summary
it always got (LiveKit prewarms with `GET /`)."""

from __future__ import annotations

import html

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse

from serve_app import __version__
from serve_app.routes.common import replica, service

router = APIRouter(tags=["service"])

SERVICE_NAME = "Qwen3-TTS Serve"
#: Every route a client may call, as listed by `GET /` (the OpenAPI document has the fields).
ENDPOINTS = (
    "POST /api/tts/synthesize", "GET /api/health", "GET /api/voices",
    "POST /v1/audio/speech", "WS /v1/audio/speech/stream", "GET /v1/models",
    "GET /v1/audio/models", "GET /v1/audio/voices",
    "POST /v1/audio/design", "POST /v1/audio/clone",
    "POST/GET /v1/voices", "GET/DELETE /v1/voices/{id}",
    "POST/GET /v1/jobs", "GET /v1/jobs/{id}", "GET /v1/jobs/{id}/audio",
    "GET /v1/usage", "GET /v1/invoices", "GET /v1/invoices/{id}", "/admin/...", "GET /livez", "GET /readyz",
)


def wants_html(request: Request) -> bool:
    """A browser's navigation asks for text/html first; API clients send */* or JSON."""
    return "text/html" in request.headers.get("accept", "")


def summary(request: Request) -> dict:
    return {
        "service": SERVICE_NAME,
        "version": __version__,
        "models": service(request).deployed_models,
        "docs": "/docs",
        "guide": "/docs/guide",
        "playground": "/playground",
        "auth": "Authorization: Bearer <key> or X-API-Key on every route but the listings, "
                "docs, health and playground" if _auth_enabled(request) else "off",
        "endpoints": list(ENDPOINTS),
    }


def _auth_enabled(request: Request) -> bool:
    gate = replica(request).admission
    return gate is not None and gate.auth_enabled


@router.get("/", summary="What this server is: JSON, or a landing page for a browser")
async def root(request: Request):
    if not wants_html(request):
        return JSONResponse(summary(request))
    base = request.scope.get("root_path", "").rstrip("/")
    return HTMLResponse(landing_page(request, base))


def landing_page(request: Request, base: str) -> str:
    svc = service(request)
    models = ", ".join(html.escape(m) for m in svc.deployed_models) or "none yet"
    if _auth_enabled(request):
        keys = ("<p>Every synthesis, voice, job and usage call needs an API key: "
                "<code>Authorization: Bearer qtts_...</code> (the openai SDK's <code>api_key</code>) "
                "or <code>X-API-Key</code>. <code>qtts demo</code> prints one when it starts; "
                "an operator makes more with <code>qtts admin create-key TENANT</code> "
                "or <code>POST /admin/tenants/{tenant}/keys</code> (with the server's "
                "<code>ADMIN_TOKEN</code>). The playground asks for it once; in the API docs, "
                "press Authorize.</p>")
    else:
        keys = ("<p>This server runs <strong>without keys</strong> (<code>--open</code> / "
                "<code>AUTH_ENABLED=false</code>): every call acts as one tenant.</p>")
    tiny = ("<p class=note>This server runs the project's tiny random-weight checkpoints (the "
            "demo): the audio is noise of a realistic shape, not speech.</p>"
            if svc.args.serves_tiny_models() else "")
    rows = "".join(f"<li><code>{html.escape(e)}</code></li>" for e in ENDPOINTS)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{SERVICE_NAME}</title>
<style>
body {{ font: 16px/1.5 system-ui, sans-serif; max-width: 46rem; margin: 2rem auto;
       padding: 0 1rem; color: #1d232b; }}
code {{ background: #f1f3f5; padding: 0 .25em; border-radius: 3px; }}
.links a {{ display: inline-block; margin: 0 1rem .5rem 0; font-weight: 600; }}
.note {{ background: #fff7e0; border-left: 4px solid #e0a800; padding: .5rem .75rem; }}
</style></head>
<body>
<h1>{SERVICE_NAME} <small>{__version__}</small></h1>
<p>Text to speech with Qwen3-TTS on Ray Serve: the seed service's <code>/api/tts/*</code>,
OpenAI's <code>/v1/audio/speech</code> (the openai SDK with
<code>base_url="{html.escape(str(request.base_url))}v1"</code>), voice design and cloning,
saved voices, long-text jobs and a speech session over a WebSocket. Models: {models}.</p>
{tiny}
<p class="links"><a href="{base}/playground">Playground</a>
<a href="{base}/docs">API docs (Swagger UI)</a> <a href="{base}/redoc">ReDoc</a>
<a href="{base}/docs/guide">WebSocket session and admin API</a>
<a href="{base}/api/health">Health</a> <a href="{base}/v1/audio/voices">Voices</a></p>
<h2>Keys</h2>
{keys}
<h2>Endpoints</h2>
<ul>{rows}</ul>
<p>An API client that sends no <code>Accept: text/html</code> gets this as JSON.</p>
</body></html>
"""
