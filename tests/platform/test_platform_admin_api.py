"""The admin HTTP router on a bare FastAPI app: every route needs the admin token."""

from __future__ import annotations

import logging

import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from fastapi.testclient import TestClient
from platform_testing import platform_args  # noqa: I001 - tests/platform helper

from serve_app.edge.api_errors import ApiError
from serve_app.platform.service import Platform
from serve_app.routes.admin import create_admin_router

ADMIN = {"Authorization": "Bearer test-admin-token"}


def make_client(platform: Platform) -> TestClient:
    app = FastAPI()

    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse(exc.body(None), status_code=exc.status, headers=exc.headers)

    app.include_router(create_admin_router(lambda: platform))
    return TestClient(app)


@pytest.fixture
def client(platform):
    return make_client(platform)


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"},
                                     {"Authorization": "test-admin-token"},
                                     {"X-API-Key": "test-admin-token"}])
def test_admin_routes_refuse_without_the_admin_token(client, headers):
    for method, path in (("get", "/admin/tenants"), ("post", "/admin/tenants"),
                         ("delete", "/admin/keys/key_x"), ("post", "/admin/voice-keys/rotate")):
        response = client.request(method, path, headers=headers, json={"name": "x"})
        assert response.status_code == 401, (method, path)
        assert response.json()["error"]["code"] == "invalid_admin_token"
    assert client.get("/admin/tenants", headers=ADMIN).json() == {"tenants": []}


def test_the_admin_api_is_off_without_a_configured_token(database_url, tmp_path):
    platform = Platform.open(platform_args(database_url, tmp_path, admin_token=None), migrate=True)
    try:
        response = make_client(platform).get("/admin/tenants", headers=ADMIN)
        assert response.status_code == 503 and response.json()["error"]["code"] == "admin_disabled"
    finally:
        platform.close()


def test_tenant_key_and_usage_workflow(client, platform, caplog):
    caplog.set_level(logging.DEBUG)
    created = client.post("/admin/tenants", headers=ADMIN, json={
        "name": "acme", "limits": {"requests_per_minute": 60, "characters_per_period": 10000}})
    assert created.status_code == 201
    tenant = created.json()
    assert tenant["limits"]["requests_per_minute"] == 60
    assert client.post("/admin/tenants", headers=ADMIN, json={"name": "acme"}).status_code == 409
    limits = client.put("/admin/tenants/acme/limits", headers=ADMIN, json={"max_concurrent": 3})
    assert limits.json()["limits"]["max_concurrent"] == 3

    key = client.post("/admin/tenants/acme/keys", headers=ADMIN,
                      json={"name": "prod", "scopes": ["endpoint:speech"]})
    assert key.status_code == 201
    secret = key.json()["key"]
    assert platform.keys.verify(secret).tenant_id == tenant["id"]
    listed = client.get(f"/admin/tenants/{tenant['id']}/keys", headers=ADMIN)
    assert secret not in listed.text and listed.json()["keys"][0]["scopes"] == ["endpoint:speech"]
    bad_scope = client.post("/admin/tenants/acme/keys", headers=ADMIN, json={"scopes": ["x:y"]})
    assert bad_scope.status_code == 422 and bad_scope.json()["error"]["param"] == "scope"

    revoked = client.delete(f"/admin/keys/{key.json()['id']}", headers=ADMIN)
    assert revoked.status_code == 200 and revoked.json()["revoked_at"]
    assert client.delete("/admin/keys/key_nope", headers=ADMIN).status_code == 404

    usage = client.get("/admin/tenants/acme/usage?period=month", headers=ADMIN).json()
    assert usage["requests"] == 0 and usage["tenant_id"] == tenant["id"]
    assert client.get("/admin/tenants/acme/usage?period=soon", headers=ADMIN).status_code == 422
    assert client.get("/admin/tenants/nobody", headers=ADMIN).status_code == 404
    rotated = client.post("/admin/voice-keys/rotate", headers=ADMIN).json()
    assert rotated["reencrypted"] == {"voices": 0, "webhook_secrets": 0, "job_results": 0,
                                      "job_segments": 0}
    assert secret not in caplog.text and "test-admin-token" not in caplog.text


def test_plans_and_billing_workflow(client, platform):
    client.post("/admin/tenants", headers=ADMIN, json={"name": "acme"})
    body = {"name": "pro", "terms": {"included": {"characters": 1000},
                                     "prices": {"per_1k_characters": {"CustomVoice": 150},
                                                "base_monthly": 1900},
                                     "overage": "bill"}}
    assert client.post("/admin/plans", json=body).status_code == 401  # admin token needed
    created = client.post("/admin/plans", headers=ADMIN, json=body)
    assert created.status_code == 201 and created.json()["current"]["version"] == 1
    floats = client.post("/admin/plans", headers=ADMIN, json={
        "name": "x", "terms": {"prices": {"per_job": 0.5}}})
    assert floats.status_code == 422 and "per_job" in floats.text
    unknown = client.post("/admin/plans", headers=ADMIN, json={
        "name": "y", "terms": {"features": ["karaoke"]}})
    assert unknown.status_code == 422 and "speech_sessions" in unknown.text
    bumped = client.post("/admin/plans/pro/versions", headers=ADMIN, json={
        "terms": {**body["terms"], "prices": {"base_monthly": 2900}}})
    assert bumped.status_code == 201
    assert [v["version"] for v in bumped.json()["versions"]] == [1, 2]
    assert client.get("/admin/plans/pro", headers=ADMIN).json()["current"]["terms"][
        "prices"]["base_monthly"] == 2900
    assigned = client.put("/admin/tenants/acme/plan", headers=ADMIN, json={"plan": "pro"})
    assert assigned.status_code == 200 and assigned.json()["version"] == 2
    assert client.get("/admin/tenants/acme/plan", headers=ADMIN).json()["plan"]["plan"] == "pro"
    assert client.put("/admin/tenants/acme/plan", headers=ADMIN,
                      json={"plan": "nope"}).status_code == 404
    hook = client.put("/admin/tenants/acme/webhook", headers=ADMIN,
                      json={"url": "https://example.com/hook"})
    assert hook.status_code == 200 and hook.json()["secret"].startswith("whsec_")
    assert client.put("/admin/tenants/acme/webhook", headers=ADMIN,
                      json={"url": "ftp://x"}).status_code == 422
    assert client.post("/admin/plans/pro/archive", headers=ADMIN).json()["archived"] is True
    assert client.get("/admin/plans", headers=ADMIN).json() == {"plans": []}
    assert len(client.get("/admin/plans?archived=true", headers=ADMIN).json()["plans"]) == 1
    closed = client.post("/admin/periods/2025-01/close", headers=ADMIN)
    assert closed.status_code == 200 and closed.json()["invoices"] == []  # acme came later
    export = client.get("/admin/periods/2025-01/export", headers=ADMIN)
    assert export.status_code == 409 and "close the period first" in export.text
    assert client.post("/admin/periods/2025-1/close", headers=ADMIN).status_code == 422
