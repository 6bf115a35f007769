"""What a newcomer's browser meets first (issue 20), through the real app without Ray: the
landing page or the JSON summary at `/`, API docs from local files, and routing before
authentication (an unknown path is a 404 and a trailing slash a redirect, without a key)."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from serve_app.app.args import AppArgs
from serve_app.app.http_app import create_http_app
from serve_app.platform.config import PlatformArgs
from serve_app.platform.service import Platform
from serve_app.routes.common import ReplicaServices
from serve_app.synthesis.admission import TenantAdmission
from serve_app.synthesis.synthesis_service import SynthesisService
from tests.unit.test_http_errors import FakeModel

BROWSER_ACCEPT = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"


async def _never(request):  # no test here synthesizes
    raise AssertionError("not called")


@pytest.fixture(scope="module")
def anon(tmp_path_factory) -> TestClient:
    """The app with keys required, called without one."""
    platform = Platform.open(PlatformArgs(data_dir=str(tmp_path_factory.mktemp("platform"))))
    args = AppArgs.model_validate({})
    svc = SynthesisService(args, {"CustomVoice": FakeModel(_never)}, audio=None)
    app = create_http_app(ReplicaServices(svc, admission=TenantAdmission(platform)))
    with TestClient(app, raise_server_exceptions=False, follow_redirects=False) as client:
        yield client
    platform.close()


def test_root_answers_an_api_client_with_json_listing_every_surface(anon):
    body = anon.get("/").json()
    assert body["docs"] == "/docs" and body["playground"] == "/playground"
    for endpoint in ("WS /v1/audio/speech/stream", "GET /v1/audio/models",
                     "GET /v1/audio/voices", "POST /v1/audio/speech"):
        assert endpoint in body["endpoints"], endpoint


def test_root_answers_a_browser_with_a_landing_page_that_says_where_keys_come_from(anon):
    page = anon.get("/", headers={"Accept": BROWSER_ACCEPT})
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    for link in ('href="/playground"', 'href="/docs"', 'href="/docs/guide"'):
        assert link in page.text, link
    assert "qtts demo</code> prints one" in page.text and "admin create-key" in page.text


def test_docs_pages_use_local_assets_only(anon):
    page = anon.get("/docs")
    assert page.status_code == 200
    assert "/docs/assets/swagger-ui-bundle.js" in page.text and "cdn" not in page.text.lower()
    assert "persistAuthorization" in page.text
    script = anon.get("/docs/assets/swagger-ui-bundle.js")
    assert script.status_code == 200 and b"SwaggerUIBundle" in script.content
    assert anon.get("/docs/assets/swagger-ui.css").status_code == 200
    assert "cdn" not in anon.get("/redoc").text.lower()
    assert anon.get("/docs/assets/../../etc/passwd").status_code == 404
    assert anon.get("/docs/assets/nope.js").json()["error"]["code"] == "not_found"
    guide = anon.get("/docs/guide")
    assert "/v1/audio/speech/stream" in guide.text and "/admin/tenants" in guide.text
    assert "/docs/guide" in anon.get("/openapi.json").json()["info"]["description"]


def test_unknown_paths_and_redirects_are_answered_before_the_key_check(anon):
    missing = anon.get("/nope")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
    assert anon.get("/v1/nope/deeper").status_code == 404
    redirect = anon.get("/playground/")
    assert redirect.status_code == 307 and redirect.headers["location"].endswith("/playground")
    assert anon.get("/v1/models").status_code == 401  # a real route still needs its key
    for path in ("/v1/voices", "/v1/jobs", "/v1/usage", "/api/voices"):
        assert anon.get(path).json()["error"]["code"] == "missing_api_key", path
    assert anon.delete("/v1/models").status_code == 405  # no route takes it: no key needed
