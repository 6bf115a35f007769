"""Tenants and keys for the graph tests, made through the admin HTTP API."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import TypeVar

import httpx

from tests.samples import wav_bytes

T = TypeVar("T")


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


def in_one_minute(attempt: Callable[[], T], tries: int = 3) -> T:
    """`attempt()` run until it starts and ends within one UTC minute: per-minute limits
    count calendar-minute windows, so requests that must share one are retried (each attempt
    with a tenant of its own) when a minute ended while they ran, instead of waiting for the
    start of a minute."""
    for _ in range(tries):
        minute = int(time.time() // 60)
        result = attempt()
        if int(time.time() // 60) == minute:
            return result
    raise AssertionError(f"{tries} attempts each ran across a minute boundary")


def usage_of(base_url: str, key: str) -> dict:
    """The key's tenant's usage today (GET /v1/usage?period=day)."""
    with httpx.Client(base_url=base_url, timeout=60,
                      headers={"Authorization": f"Bearer {key}"}) as client:
        r = client.get("/v1/usage", params={"period": "day"})
        assert r.status_code == 200, r.text
        return r.json()
