"""The playground's usage panel in a real browser, against the real HTTP app without Ray
(uvicorn in a thread, a stand-in model): a tenant sees its plan, the month's cost and what
is left of the included quota."""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn
from platform_testing import platform_args, terms

from serve_app.app.args import AppArgs
from serve_app.app.http_app import create_http_app
from serve_app.platform.service import Platform
from serve_app.platform.usage import UsageRecord
from serve_app.routes.common import ReplicaServices
from serve_app.synthesis.admission import TenantAdmission
from serve_app.synthesis.synthesis_service import SynthesisService
from tests.unit.test_http_errors import FakeModel

CHROMIUM = Path("/usr/bin/chromium")


async def _never(request):
    raise AssertionError("no synthesis here")


@pytest.fixture
def server(tmp_path) -> Iterator[tuple[str, Platform]]:
    platform = Platform.open(platform_args(f"sqlite:///{tmp_path / 'p.db'}", tmp_path))
    admission = TenantAdmission(platform)
    svc = SynthesisService(AppArgs.model_validate({}), {"CustomVoice": FakeModel(_never)},
                           audio=None, admission=admission)
    app = create_http_app(ReplicaServices(svc, admission=admission))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    web = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=web.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not web.started:
        assert time.monotonic() < deadline and thread.is_alive(), "server did not start"
        time.sleep(0.02)
    yield f"http://127.0.0.1:{port}", platform
    web.should_exit = True
    thread.join(10)
    platform.close()


@pytest.fixture
def page():
    if not CHROMIUM.exists():
        if os.environ.get("QTTS_REQUIRE_BACKENDS") == "1":
            pytest.fail(f"{CHROMIUM} is not installed")
        pytest.skip(f"{CHROMIUM} is not installed")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM),
                                    args=["--headless", "--no-sandbox", "--disable-gpu"])
        context = browser.new_context(locale="en-US")
        yield context.new_page()
        browser.close()


def test_the_playground_shows_the_months_usage_cost_and_remaining_quota(server, page):
    base, platform = server
    tenant = platform.tenants.create("acme")
    platform.plans.create("pro", terms(included={"characters": 100, "audio_seconds": 60,
                                                 "voice_clones": None}))
    platform.plans.assign("acme", "pro")
    key = platform.keys.create("acme").secret
    platform.usage.record(UsageRecord(request_id="r1", tenant_id=tenant.id, model="CustomVoice",
                                      endpoint="speech", characters=150, audio_seconds=12.5))
    page.goto(f"{base}/playground")
    page.fill("#api-key", key)
    page.click("#save-key")
    page.wait_for_function("document.getElementById('usage-total').textContent.length > 0")
    assert page.text_content("#usage-total") == "Cost so far: $0.10"  # 50 past at 200 per 1,000
    assert "Plan pro v1" in page.text_content("#usage-plan")
    assert page.text_content("#usage-rows") == "CustomVoice115012.5$0.10"
    quota = page.text_content("#usage-quota")
    assert "150 of 100 included characters used, 0 left" in quota
    assert "12.5 of 60 included seconds of audio used, 47.5 left" in quota
    assert page.is_hidden("#error")
