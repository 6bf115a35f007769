"""Tenants and keys for the graph tests, made through the admin HTTP API."""

from __future__ import annotations

import time
import uuid

import httpx

from tests.samples import wav_bytes


def create_tenant_key(base_url: str, admin_token: str, name: str, **limits) -> str:
    """A new tenant (through the admin API) and an API key of it."""
    admin = {"Authorization": f"Bearer {admin_token}"}
    with httpx.Client(base_url=base_url, timeout=60, headers=admin) as client:
        r = client.post("/admin/tenants", json={"name": name, "limits": limits or None})
        assert r.status_code == 201, r.text
        r = client.post(f"/admin/tenants/{name}/keys", json={"name": "tests"})
        assert r.status_code == 201, r.text
        return r.json()["key"]


def unique_name(prefix: str) -> str:
    """A tenant or voice name no other test (or earlier run on the same database) uses."""
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


def as_tenant(graph, key: str) -> httpx.Client:
    """An HTTP client of the graph that calls with `key`."""
    return graph.client(headers={"Authorization": f"Bearer {key}"})


def save_clone_voice(graph, key: str, name: str) -> dict:
    """A saved voice of the key's tenant, cloned (x-vector only, consent given) from a 2 s
    sample: the voice as POST /v1/voices answers it."""
    with as_tenant(graph, key) as client:
        r = client.post("/v1/voices", data={"name": name, "consent": "true",
                                            "x_vector_only": "true"},
                        files={"reference_audio": ("ref.wav", wav_bytes(2.0), "audio/wav")})
    assert r.status_code == 201, r.text
    return r.json()


def fresh_minute(needed_s: float = 40.0) -> None:
    """Wait for the next UTC minute unless `needed_s` of this one remain: per-minute limits
    count in calendar-minute windows, so requests that must share one window start early
    in it (a busy machine can make a few requests take many seconds)."""
    left = 60.0 - time.time() % 60.0
    if left < needed_s:
        time.sleep(left + 0.05)
