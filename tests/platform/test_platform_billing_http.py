"""Plans and billing through the real HTTP app without Ray (routes, auth middleware,
admission, metering; a stand-in model): what a plan leaves out is 403 naming it, `block`
is 429 naming the quota and its reset, /v1/usage shows the cost and the included quota
left, and a tenant reads its invoices as JSON and CSV. SQLite and PostgreSQL (under RLS)."""

from __future__ import annotations

import csv
import io
import time

import numpy as np
import pytest
from fastapi.testclient import TestClient
from platform_testing import MARCH, at, record, terms

from deployments.engine.types import SynthesisResult
from serve_app.app.args import AppArgs
from serve_app.app.http_app import create_http_app
from serve_app.routes.common import ReplicaServices
from serve_app.synthesis.admission import TenantAdmission
from serve_app.synthesis.synthesis_service import SynthesisService
from tests.samples import wav_bytes
from tests.unit.test_http_errors import FakeModel


async def one_second(request):
    return SynthesisResult(audio=np.zeros(24000, dtype=np.float32), sample_rate=24000, frames=12)


@pytest.fixture
def app(platform) -> TestClient:
    admission = TenantAdmission(platform)
    svc = SynthesisService(AppArgs.model_validate({}),
                           {"CustomVoice": FakeModel(one_second),
                            "VoiceClone": FakeModel(one_second)}, audio=None,
                           admission=admission)
    http = create_http_app(ReplicaServices(svc, admission=admission))
    with TestClient(http, raise_server_exceptions=False) as client:
        yield client


def tenant_on(platform, name: str, plan_terms) -> dict[str, str]:
    platform.tenants.create(name)
    platform.plans.create(f"{name}-plan", plan_terms)
    platform.plans.assign(name, f"{name}-plan")
    return {"Authorization": f"Bearer {platform.keys.create(name).secret}"}


def speak(app: TestClient, key: dict[str, str], text: str):
    return app.post("/v1/audio/speech", headers=key, json={
        "model": "tts-1", "voice": "ryan", "input": text, "response_format": "wav"})


def usage_after(app: TestClient, key: dict[str, str], *, requests: int) -> dict:
    """GET /v1/usage once `requests` rows are written (metering writes them after the
    response, in a task of its own)."""
    deadline = time.monotonic() + 10
    while True:
        usage = app.get("/v1/usage", headers=key)
        assert usage.status_code == 200, usage.text
        if usage.json()["requests"] >= requests:
            return usage.json()
        assert time.monotonic() < deadline, usage.text
        time.sleep(0.02)


def test_a_plan_without_clone_answers_403_naming_the_feature(app, platform):
    key = tenant_on(platform, "acme", terms(features=["saved_voices"]))
    refused = app.post("/v1/audio/clone", headers=key,
                       files={"reference_audio": ("ref.wav", wav_bytes(1.0), "audio/wav")},
                       data={"input": "Hello there.", "ref_text": "a reference"})
    assert refused.status_code == 403, refused.text
    error = refused.json()["error"]
    assert error["code"] == "feature_not_in_plan" and "feature clone" in error["message"]
    jobs = app.post("/v1/jobs", headers=key, json={"model": "tts-1", "voice": "ryan",
                                                   "input": "Long text."})
    assert jobs.status_code == 403 and "feature jobs" in jobs.json()["error"]["message"]
    assert speak(app, key, "Still allowed.").status_code == 200


def test_block_answers_429_with_the_quota_and_its_reset(app, platform):
    key = tenant_on(platform, "acme", terms(overage="block", included={
        "characters": 20, "audio_seconds": None, "voice_clones": None}))
    first = speak(app, key, "Twelve chars")
    assert first.status_code == 200, first.text
    refused = speak(app, key, "Twelve again")
    assert refused.status_code == 429
    error = refused.json()["error"]
    assert error["code"] == "quota_exceeded"
    assert "20 characters this month" in error["message"] and "resets at" in error["message"]
    assert int(refused.headers["Retry-After"]) > 0
    assert refused.headers["X-RateLimit-Remaining-Characters"] == "8"


def test_usage_shows_cost_and_the_included_quota_used_and_left(app, platform):
    key = tenant_on(platform, "acme", terms(included={"characters": 10, "audio_seconds": 60}))
    for text in ("Hello world.", "Goodbye!"):  # 12 + 8 characters: 10 past the quota
        assert speak(app, key, text).status_code == 200
    body = usage_after(app, key, requests=2)
    assert body["currency"] == "USD" and body["cost"] == 2  # 10 at 200 per 1,000
    assert body["by_model"]["CustomVoice"]["cost"] == 2
    assert body["included"]["characters"] == {"included": 10, "used": 20, "remaining": 0}
    assert body["included"]["audio_seconds"] == {"included": 60, "used": 2.0, "remaining": 58.0}
    assert body["plan"] == {"name": "acme-plan", "version": 1, "overage": "bill"}


def test_a_tenant_reads_its_own_invoices_as_json_and_csv(app, platform):
    acme = platform.tenants.create("acme")
    platform.tenants.create("beta")
    platform.plans.create("pro", terms(), effective_from=MARCH)
    for name in ("acme", "beta"):
        platform.plans.assign(name, "pro", effective_from=MARCH)
    record(platform, acme.id, "r1", at(3), characters=1100)
    invoices = {i.tenant_name: i for i in platform.invoices.close_period("2025-03")}
    acme_key = {"Authorization": f"Bearer {platform.keys.create('acme').secret}"}
    beta_key = {"Authorization": f"Bearer {platform.keys.create('beta').secret}"}

    listed = app.get("/v1/invoices", headers=acme_key).json()["data"]
    assert [i["id"] for i in listed] == [invoices["acme"].id]
    one = app.get(f"/v1/invoices/{invoices['acme'].id}", headers=acme_key).json()
    assert one["total"] == 1900 + 200 and one["period"] == "2025-03"
    table = app.get(f"/v1/invoices/{invoices['acme'].id}.csv", headers=acme_key)
    assert table.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(table.text)))
    assert int(rows[-1]["amount"]) == one["total"]
    other = app.get(f"/v1/invoices/{invoices['acme'].id}", headers=beta_key)
    assert other.status_code == 404  # another tenant's: not found, as a missing one
    assert app.get(f"/v1/invoices/{invoices['acme'].id}.csv", headers=beta_key).status_code == 404
    assert app.get("/v1/invoices").status_code == 401
