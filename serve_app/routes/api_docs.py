"""The API docs pages, served by the ingress with no CDN: /docs (Swagger UI), /redoc, and
/docs/guide (the WebSocket speech session and the admin API, which OpenAPI cannot describe).

Swagger UI's and ReDoc's files come from the `fastapi-offline` package (only its `static/`
folder, a current swagger-ui-dist and redoc bundle; never its FastAPI subclass), so /docs
renders on a machine with no network. `persistAuthorization` keeps a key typed into
Authorize across reloads (the browser's storage, as the playground keeps its key). These
paths are public (serve_app.edge.path_table): the pages hold no data, and Try-it-out calls send
the key the reader typed.
"""

from __future__ import annotations

from functools import cache
from importlib.resources import files
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.openapi.docs import (
    get_redoc_html,
    get_swagger_ui_html,
    get_swagger_ui_oauth2_redirect_html,
)
from fastapi.responses import HTMLResponse, Response

from serve_app.edge.api_errors import ApiError

router = APIRouter(include_in_schema=False)

DOCS_PATH = "/docs"
REDOC_PATH = "/redoc"
OAUTH2_REDIRECT_PATH = "/docs/oauth2-redirect"
GUIDE_PATH = "/docs/guide"
#: Served below this prefix (public, serve_app.edge.path_table.PUBLIC_PREFIXES).
ASSETS_PREFIX = "/docs/assets/"
#: asset name -> content type: the only files read from the package's static folder.
ASSETS = {"swagger-ui-bundle.js": "text/javascript; charset=utf-8",
          "swagger-ui.css": "text/css; charset=utf-8",
          "redoc.standalone.js": "text/javascript; charset=utf-8",
          "favicon.png": "image/png"}
_GUIDE = Path(__file__).resolve().parents[1] / "static" / "docs" / "guide.html"
_CACHED = {"Cache-Control": "public, max-age=86400"}


@cache
def _asset(name: str) -> bytes:
    return (files("fastapi_offline") / "static" / name).read_bytes()


def _root(request: Request) -> str:
    """The application's route prefix (`/edge` when served under it), for absolute links."""
    return request.scope.get("root_path", "").rstrip("/")


@router.get(DOCS_PATH)
async def swagger_ui(request: Request) -> HTMLResponse:
    root = _root(request)
    return get_swagger_ui_html(
        openapi_url=f"{root}{request.app.openapi_url}",
        title=f"{request.app.title} - API docs",
        swagger_js_url=f"{root}{ASSETS_PREFIX}swagger-ui-bundle.js",
        swagger_css_url=f"{root}{ASSETS_PREFIX}swagger-ui.css",
        swagger_favicon_url=f"{root}{ASSETS_PREFIX}favicon.png",
        oauth2_redirect_url=f"{root}{OAUTH2_REDIRECT_PATH}",
        swagger_ui_parameters={"persistAuthorization": True},
    )


@router.get(OAUTH2_REDIRECT_PATH)
async def swagger_ui_redirect() -> HTMLResponse:
    return get_swagger_ui_oauth2_redirect_html()


@router.get(REDOC_PATH)
async def redoc(request: Request) -> HTMLResponse:
    root = _root(request)
    return get_redoc_html(openapi_url=f"{root}{request.app.openapi_url}",
                          title=f"{request.app.title} - ReDoc",
                          redoc_js_url=f"{root}{ASSETS_PREFIX}redoc.standalone.js",
                          redoc_favicon_url=f"{root}{ASSETS_PREFIX}favicon.png",
                          with_google_fonts=False)


@router.get(GUIDE_PATH)
async def guide() -> HTMLResponse:
    return HTMLResponse(_GUIDE.read_text(encoding="utf-8"))


@router.get(ASSETS_PREFIX + "{name}")
async def docs_asset(name: str) -> Response:
    if name not in ASSETS:  # only the named files: no path from the client reaches the disk
        raise ApiError(404, "not_found", f"No docs asset {name!r}.")
    return Response(_asset(name), media_type=ASSETS[name], headers=_CACHED)
