"""WebSocket sessions cannot hold the door (issue 16, item 1): sockets that send nothing and
carry no key are capped per client address and per replica and refused at the handshake
beyond that, so health checks and every tenant's requests are answered meanwhile; a socket
must say who it is within `ingress.session_start_timeout_s`; a bad header key is refused at
the handshake; an authenticated session counts against its tenant's concurrency."""

from __future__ import annotations

import asyncio
import json
import time

import httpx
import pytest
import websockets
from websockets.exceptions import ConnectionClosed, InvalidStatus

from serve_app.app.args import IngressArgs
from serve_app.tools.profiles import load_profile
from tests.graph.conftest import CPU_PROFILE
from tests.graph.tenants import create_tenant_key, unique_name

PATH = "/v1/audio/speech/stream"
#: Source addresses the silent sockets come from (all of 127/8 is this machine's loopback).
ADDRESSES = [f"127.0.0.{i}" for i in range(2, 8)]


def ws_url(base_url: str) -> str:
    return base_url.replace("http://", "ws://") + PATH


async def _connect(url: str, source: str, **kw):
    """An open socket, or the HTTP answer that refused the handshake."""
    try:
        return await websockets.connect(url, open_timeout=60, local_addr=(source, 0), **kw)
    except InvalidStatus as exc:
        return exc.response


def _ingress_slots() -> int:
    profile = load_profile(CPU_PROFILE)
    return int(profile.overrides["TTSIngress"]["max_ongoing_requests"])


@pytest.mark.timeout(300)
def test_silent_keyless_sockets_cannot_starve_health_or_another_tenants_request(graph, edge_app):
    """More silent keyless sockets than the ingress has slots, from six addresses: only the
    gate's budget is held (the rest refused at once with the envelope and Retry-After), and
    health and another tenant's synthesis are answered while they are held."""
    args = IngressArgs()  # the edge app's gate budgets are the defaults
    slots = _ingress_slots()
    key = create_tenant_key(graph.base_url, graph.admin_token, unique_name("gate"))

    async def scenario():
        url = ws_url(edge_app)
        # one address over its own cap, then five more addresses over the replica's
        answers = await asyncio.gather(*(_connect(url, ADDRESSES[0]) for _ in range(
            args.max_pending_sockets_per_client + 2)))
        answers += await asyncio.gather(*(
            _connect(url, ADDRESSES[1 + i % (len(ADDRESSES) - 1)]) for i in range(slots)))
        sockets = [a for a in answers if not hasattr(a, "status_code")]
        refusals = [a for a in answers if hasattr(a, "status_code")]
        async with httpx.AsyncClient(base_url=edge_app, timeout=30) as client:
            started = time.monotonic()
            health = await client.get("/api/health", timeout=5)
            health_s = time.monotonic() - started
            started = time.monotonic()
            speech = await client.post(
                "/v1/audio/speech", headers={"Authorization": f"Bearer {key}"},
                json={"model": "tts-1", "voice": "alloy", "input": "Still served.",
                      "response_format": "pcm", "max_new_tokens": 8})
            speech_s = time.monotonic() - started
        still_open = 0
        for ws in sockets:  # none of them was let go meanwhile: they were held throughout
            try:
                await asyncio.wait_for(ws.recv(), 0.01)
            except TimeoutError:
                still_open += 1
            except ConnectionClosed:
                pass
        for ws in sockets:
            await ws.close()
        return sockets, refusals, health, health_s, speech, speech_s, still_open

    sockets, refusals, health, health_s, speech, speech_s, still_open = asyncio.run(scenario())
    print(f"\n{len(sockets)} held, {len(refusals)} refused; health {health_s:.2f} s, "
          f"speech {speech_s:.2f} s while {still_open} silent sockets were held")
    assert health.status_code == 200 and speech.status_code == 200, (health.text, speech.text)
    assert len(sockets) == args.max_pending_sockets == still_open
    assert len(sockets) + len(refusals) == slots + args.max_pending_sockets_per_client + 2
    codes = [r.status_code for r in refusals]
    assert codes.count(429) == 2 and set(codes) == {429, 503}, codes  # an address; the replica
    for refusal in refusals:
        error = json.loads(refusal.body)["error"]
        assert error["code"] in ("too_many_connections", "overloaded"), error
        assert "max_pending_sockets" in error["message"]
        assert int(refusal.headers["Retry-After"]) >= 1


def test_a_socket_that_sends_nothing_is_closed_at_the_start_deadline(graph):
    deadline = load_profile(CPU_PROFILE).args.ingress.session_start_timeout_s

    async def silent():
        started = time.monotonic()
        async with websockets.connect(ws_url(graph.base_url), open_timeout=60) as ws:
            event = json.loads(await asyncio.wait_for(ws.recv(), deadline + 60))
            with pytest.raises(ConnectionClosed):
                await asyncio.wait_for(ws.recv(), 30)
            return event, ws.close_code, time.monotonic() - started

    event, code, waited = asyncio.run(silent())
    assert event["type"] == "error" and event["error"]["code"] == "session_start_timeout"
    assert "session_start_timeout_s" in event["error"]["message"]
    assert code == 1008 and waited >= deadline


def test_a_bad_header_key_is_refused_at_the_handshake_with_the_envelope(graph):
    async def connect():
        return await _connect(ws_url(graph.base_url), "127.0.0.1",
                              additional_headers={"Authorization": "Bearer qtts-not-a-key"})

    answer = asyncio.run(connect())
    assert answer.status_code == 401
    error = json.loads(answer.body)["error"]
    assert error["code"] == "invalid_api_key" and "Traceback" not in error["message"]


def test_sessions_count_against_their_tenants_concurrency(graph):
    """A tenant limited to one request at a time holds one session; the second is refused
    with 429 too_many_sessions (and Retry-After) until the first ends."""
    key = create_tenant_key(graph.base_url, graph.admin_token, unique_name("gate-conc"),
                            max_concurrent=1)
    first_message = json.dumps({"type": "session", "model": "tts-1", "voice": "vivian",
                                "response_format": "pcm", "api_key": key})

    async def scenario():
        url = ws_url(graph.base_url)
        first = await websockets.connect(url, open_timeout=60)
        await first.send(first_message)
        created = json.loads(await asyncio.wait_for(first.recv(), 60))
        second = await websockets.connect(url, open_timeout=60)
        await second.send(first_message)
        refused = json.loads(await asyncio.wait_for(second.recv(), 60))
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(second.recv(), 30)
        await first.close()
        third = None
        for _ in range(100):  # the first session's place frees once the server sees it end
            third = await websockets.connect(url, open_timeout=60)
            await third.send(first_message)
            answer = json.loads(await asyncio.wait_for(third.recv(), 60))
            await third.close()
            if answer["type"] == "session.created":
                break
            await asyncio.sleep(0.2)
        return created, refused, second.close_code, answer

    created, refused, code, later = asyncio.run(scenario())
    assert created["type"] == "session.created"
    assert refused["type"] == "error" and refused["error"]["code"] == "too_many_sessions"
    assert refused["error"]["retry_after"] >= 1 and code == 4429
    assert later["type"] == "session.created"
