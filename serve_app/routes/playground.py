"""The web playground: GET /playground and its two assets, plain files from static/playground/.

No build step and nothing fetched from a CDN (it must work offline). The page calls the
public API with the key the user typed once (kept in localStorage, sent as a Bearer header,
never put in a URL). These paths are public (serve_app.edge.path_table.PUBLIC_PATHS): the page itself
holds no data. The server's choices the page needs (languages, formats, the longest text for
one request) are written into index.html as JSON when it is served, so they are defined once,
here on the server.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from deployments.audio.formats import FORMAT_INFO
from serve_app.app.args import MODEL_DEPLOYMENTS
from serve_app.edge.api_errors import ApiError
from serve_app.protocol.openai_api import SpeechRequest
from serve_app.protocol.seed_api import SeedSynthesizeRequest
from serve_app.routes.common import replica, service
from serve_app.synthesis import catalog

router = APIRouter(tags=["playground"])

STATIC_DIR = Path(__file__).resolve().parents[1] / "static" / "playground"
#: asset name -> content type; each is also in PUBLIC_PATHS as /playground/<name>
ASSETS = {"playground.js": "text/javascript; charset=utf-8",
          "playground.css": "text/css; charset=utf-8"}
_CONFIG_MARKER = "/*QTTS_CONFIG*/{}"
_NO_STORE = {"Cache-Control": "no-cache"}


@cache
def _read(name: str) -> str:
    return (STATIC_DIR / name).read_text(encoding="utf-8")


def page_config(request: Request) -> dict:
    svc, gate = service(request), replica(request).admission
    return {
        "auth_enabled": gate is None or gate.auth_enabled,
        "models": [m for m in MODEL_DEPLOYMENTS if m in svc.deployed_models],
        "languages": ["auto", *catalog.LANGUAGE_CODES],
        "language_names": catalog.LANGUAGE_CODES,
        "formats": [f.value for f in FORMAT_INFO],
        "extensions": {f.value: info.extension for f, info in FORMAT_INFO.items()},
        "max_text_chars": svc.args.ingress.max_text_chars,
        # the API's own defaults, so the page's first request is the API's default request
        "default_voice": SeedSynthesizeRequest.model_fields["speaker"].default,
        "default_format": _default_format(),
        "tiny_models": svc.args.serves_tiny_models(),  # the demo: noise, not speech
    }


def _default_format() -> str:
    default = SpeechRequest.model_fields["response_format"].default
    return getattr(default, "value", default)


@router.get("/playground", response_class=HTMLResponse, include_in_schema=False)
async def playground_page(request: Request) -> HTMLResponse:
    config = json.dumps(page_config(request)).replace("</", "<\\/")
    return HTMLResponse(_read("index.html").replace(_CONFIG_MARKER, config), headers=_NO_STORE)


@router.get("/playground/{asset}", include_in_schema=False)
async def playground_asset(asset: str) -> Response:
    if asset not in ASSETS:  # only the named files: no path from the client reaches the disk
        raise ApiError(404, "not_found", f"No playground asset {asset!r}.")
    return Response(_read(asset), media_type=ASSETS[asset], headers=_NO_STORE)
