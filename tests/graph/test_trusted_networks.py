"""The seed's Go worker sends no API key (issue 8, item 11). With `platform.trusted_networks`
set (off by default), keyless calls to the seed routes from those networks act as the tenant
`trusted_network_tenant`: limited and metered like any tenant; everything else still needs a
key, and a wrong key is still refused. The edge app trusts loopback (tests/graph/conftest.py)."""

from __future__ import annotations

import time

import httpx

from serve_app.platform.config import PlatformArgs


def test_trusted_networks_are_off_by_default():
    assert PlatformArgs().trusted_networks == []


def test_the_main_graph_refuses_a_keyless_seed_call(graph):
    with graph.client(headers={}) as anon:
        r = anon.post("/api/tts/synthesize", json={"text": "No key.", "speaker": "Vivian"})
    assert r.status_code == 401 and r.json()["success"] is False


def test_a_keyless_seed_call_from_a_trusted_network_acts_as_the_worker_tenant(graph, edge_app):
    admin = {"Authorization": f"Bearer {graph.admin_token}"}
    with httpx.Client(base_url=graph.base_url, timeout=60, headers=admin) as http:
        r = http.post("/admin/tenants", json={"name": "seed-worker",
                                              "limits": {"requests_per_minute": 1}})
        assert r.status_code == 201, r.text
    body = {"text": "From the worker.", "speaker": "Vivian", "seed": 2}
    with httpx.Client(base_url=edge_app, timeout=120, headers=graph.auth) as keyed:
        assert keyed.post("/api/tts/synthesize", json=body).status_code == 200  # warm the app

    # one request a minute (calendar windows): a 200 and then a 429 within one minute; a
    # minute that ends between two calls just starts the pair again (no waiting for one)
    first = limited = None
    with httpx.Client(base_url=edge_app, timeout=120) as worker:  # no key, as the Go worker
        for _ in range(6):
            minute = int(time.time() // 60)
            r = worker.post("/api/tts/synthesize", json=body)
            if first is not None and r.status_code == 429 and minute == first[1]:
                limited = r
                break
            first = (r, minute) if r.status_code == 200 else None
    assert first is not None and limited is not None, "no 200 then 429 within one minute"
    first = first[0]
    assert first.json()["success"] is True and first.json()["duration"] > 0
    assert first.headers["X-RateLimit-Limit-Requests"] == "1"
    assert int(limited.headers["Retry-After"]) >= 1
    with httpx.Client(base_url=graph.base_url, timeout=60, headers=admin) as http:
        for _ in range(100):  # usage is written right after the answer
            usage = http.get("/admin/tenants/seed-worker/usage").json()
            if usage.get("requests", 0) >= 1:
                break
        assert usage["requests"] >= 1 and usage["characters"] >= len(body["text"])


def test_only_the_seed_routes_are_open_to_a_trusted_network(edge_app):
    with httpx.Client(base_url=edge_app, timeout=60) as anon:
        r = anon.post("/v1/audio/speech", json={"model": "tts-1", "input": "x", "voice": "alloy"})
        assert r.status_code == 401
        assert anon.get("/v1/voices").status_code == 401
        wrong = anon.post("/api/tts/synthesize", json={"text": "x"},
                          headers={"Authorization": "Bearer qtts_not_a_key"})
        assert wrong.status_code == 401 and wrong.json()["success"] is False
