"""The multi-tenant platform wired into the graph (issue 4): keys, limits, usage, saved voices,
jobs, isolation, and keys kept out of the logs. Real HTTP against the shared graph, whose
platform is SQLite in a fresh directory plus the local Redis (tests/graph/conftest.py)."""

from __future__ import annotations

import asyncio
import io
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest
import soundfile as sf
from ray import serve

from serve_app.protocol.speech import CustomVoiceInput
from tests.graph.conftest import small_app
from tests.graph.tenants import (
    as_tenant,
    create_tenant_key,
    in_one_minute,
    save_clone_voice,
    unique_name,
)
from tests.samples import wav_bytes


@pytest.fixture(scope="module")
def tenant_a(graph) -> str:
    return create_tenant_key(graph.base_url, graph.admin_token, unique_name("a"))


@pytest.fixture(scope="module")
def tenant_b(graph) -> str:
    return create_tenant_key(graph.base_url, graph.admin_token, unique_name("b"))


@pytest.fixture(scope="module")
def saved_voice(graph, tenant_a) -> str:
    voice = save_clone_voice(graph, tenant_a, "narrator")
    assert voice["kind"] == "clone" and voice["consent"] is True
    return voice["id"]


# ------------------------------------------------------------------------------- auth
def test_synthesis_without_a_valid_key_is_401_and_public_routes_stay_open(graph):
    with graph.client(headers={}) as anon:
        r = anon.post("/v1/audio/speech", json={"model": "tts-1", "input": "x", "voice": "alloy"})
        assert r.status_code == 401 and r.json()["error"]["code"] == "missing_api_key"
        assert r.headers["WWW-Authenticate"].startswith("Bearer")
        r = anon.post("/api/tts/synthesize", json={"text": "x"},
                      headers={"Authorization": "Bearer qtts_not-a-key"})
        assert r.status_code == 401 and r.json()["success"] is False  # the seed's shape
        for path in ("/v1/voices", "/v1/jobs", "/v1/usage", "/api/voices"):
            assert anon.get(path).status_code == 401, path
        for path in ("/", "/openapi.json", "/livez", "/api/health"):
            assert anon.get(path).status_code == 200, path
        assert anon.get("/admin/tenants").status_code == 401
        assert anon.get("/admin/tenants", headers={"Authorization": "Bearer nope"}).status_code == 401


def test_x_api_key_header_works_and_responses_carry_rate_limit_headers(graph):
    key = create_tenant_key(graph.base_url, graph.admin_token, unique_name("hdr"),
                            requests_per_minute=100, characters_per_period=100_000)
    with graph.client(headers={"X-API-Key": key}) as client:
        r = client.post("/api/tts/synthesize", json={"text": "Headers.", "speaker": "Ryan"})
    assert r.status_code == 200, r.text
    assert r.headers["X-RateLimit-Limit-Requests"] == "100"
    assert int(r.headers["X-RateLimit-Remaining-Requests"]) == 99
    assert r.headers["X-RateLimit-Limit-Characters"] == "100000"


def test_requests_per_minute_exceeded_is_429_with_retry_after(graph):
    def attempt() -> list[httpx.Response]:
        key = create_tenant_key(graph.base_url, graph.admin_token, unique_name("rpm"),
                                requests_per_minute=2)
        with as_tenant(graph, key) as client:
            return [client.post("/api/tts/synthesize",
                                json={"text": "Limit.", "speaker": "Ryan"}) for _ in range(3)]

    codes = in_one_minute(attempt)
    assert [r.status_code for r in codes] == [200, 200, 429]
    refused = codes[-1]
    assert int(refused.headers["Retry-After"]) >= 1
    assert refused.headers["X-RateLimit-Remaining-Requests"] == "0"
    assert refused.json()["error"]["code"] == "rate_limited"


def test_a_job_over_the_per_minute_limit_is_refused_at_submission(graph):
    def attempt() -> tuple[str, list[httpx.Response]]:
        key = create_tenant_key(graph.base_url, graph.admin_token, unique_name("jobrpm"),
                                requests_per_minute=2)
        with as_tenant(graph, key) as client:
            return key, [client.post("/v1/jobs", json={"input": "Queued.", "voice": "alloy",
                                                       "max_new_tokens": 4})
                         for _ in range(3)]

    key, codes = in_one_minute(attempt)
    with as_tenant(graph, key) as client:
        assert [r.status_code for r in codes] == [202, 202, 429], [r.text for r in codes]
        assert int(codes[-1].headers["Retry-After"]) >= 1
        assert codes[-1].json()["error"]["code"] == "rate_limited"
        assert len(client.get("/v1/jobs").json()["data"]) == 2  # the refused one was never queued


# ------------------------------------------------------------------------------ usage
def test_n_concurrent_requests_give_exactly_n_usage_records_matching_the_responses(graph):
    key = create_tenant_key(graph.base_url, graph.admin_token, unique_name("usage"))
    texts = [f"Usage number {i} is counted once." for i in range(6)]

    async def burst() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=graph.base_url, timeout=300,
                                     headers={"Authorization": f"Bearer {key}"}) as client:
            return await asyncio.gather(*(
                client.post("/api/tts/synthesize",
                            json={"text": t, "speaker": "Vivian", "seed": 500 + i})
                for i, t in enumerate(texts)))

    responses = asyncio.run(burst())
    assert [r.status_code for r in responses] == [200] * 6
    with as_tenant(graph, key) as client:
        deadline = time.monotonic() + 20
        while True:
            usage = client.get("/v1/usage", params={"period": "month"}).json()
            if usage["requests"] >= 6 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
    assert usage["requests"] == 6 and usage["by_status"] == {"ok": 6}
    assert usage["characters"] == sum(len(t) for t in texts)
    produced = sum(r.json()["duration"] for r in responses)
    assert abs(usage["audio_seconds"] - produced) < 0.01


# ----------------------------------------------------------------------- saved voices
def test_a_saved_voice_works_through_the_openai_sdk_and_the_seed_api(graph, tenant_a,
                                                                      saved_voice):
    client = openai.OpenAI(base_url=f"{graph.base_url}/v1", api_key=tenant_a, max_retries=0)
    audio = client.audio.speech.create(model="tts-1", voice=saved_voice, input="Saved voice.",
                                       response_format="wav").content
    data, rate = sf.read(io.BytesIO(audio))
    assert rate == 24000 and len(data) > 0
    by_name = client.audio.speech.create(model="tts-1", voice="narrator", input="By name.",
                                         response_format="wav").content
    assert by_name[:4] == b"RIFF"
    with as_tenant(graph, tenant_a) as http:
        r = http.post("/api/tts/synthesize", json={"text": "Seed.", "speaker": saved_voice})
        assert r.status_code == 200 and r.json()["success"] is True
        listed = http.get("/v1/voices").json()["data"]
        assert [v["id"] for v in listed] == [saved_voice]


def test_tenant_b_cannot_list_use_or_delete_tenant_as_voice(graph, tenant_b, saved_voice):
    with as_tenant(graph, tenant_b) as http:
        assert http.get("/v1/voices").json()["data"] == []
        assert http.get(f"/v1/voices/{saved_voice}").status_code == 404
        assert http.delete(f"/v1/voices/{saved_voice}").status_code == 404
        r = http.post("/v1/audio/speech", json={"model": "tts-1", "input": "Steal.",
                                                "voice": saved_voice})
        assert r.status_code == 404
        r = http.post("/api/tts/synthesize", json={"text": "Steal.", "speaker": saved_voice})
        assert r.status_code == 404
        r = http.post("/v1/jobs", json={"input": "Steal.", "voice": saved_voice})
        assert r.status_code == 404


def test_clone_voice_requires_consent_and_delete_removes_it(graph, tenant_b):
    with as_tenant(graph, tenant_b) as http:
        files = {"reference_audio": ("ref.wav", wav_bytes(2.0), "audio/wav")}
        r = http.post("/v1/voices", data={"name": "x", "x_vector_only": "true",
                                          "consent": "false"}, files=files)
        assert r.status_code == 422 and r.json()["error"]["param"] == "consent"
        r = http.post("/v1/voices", data={"name": "temp", "x_vector_only": "true",
                                          "consent": "true"}, files=files)
        assert r.status_code == 201
        voice = r.json()["id"]
        assert http.delete(f"/v1/voices/{voice}").json()["deleted"] is True
        assert http.get(f"/v1/voices/{voice}").status_code == 404
        r = http.post("/v1/audio/speech", json={"model": "tts-1", "input": "Gone.",
                                                "voice": voice})
        assert r.status_code == 404


def test_a_designed_voice_is_saved_and_speaks(graph, tenant_b):
    with as_tenant(graph, tenant_b) as http:
        r = http.post("/v1/voices", json={"name": "bright", "seed": 3,
                                          "description": "A bright, quick young voice."})
        assert r.status_code == 201, r.text
        assert r.json()["kind"] == "design"
        r = http.post("/v1/audio/speech", json={"model": "tts-1", "input": "Designed.",
                                                "voice": r.json()["id"],
                                                "response_format": "wav"})
        assert r.status_code == 200 and r.content[:4] == b"RIFF"


# ------------------------------------------------------------------------------- jobs
def test_a_long_job_completes_and_its_audio_downloads(graph, tenant_a, tenant_b):
    text = " ".join(f"This is sentence number {i} of a long job, split at its end." for i in
                    range(12))  # > 2 x segment_chars: three segments, joined
    with as_tenant(graph, tenant_a) as http:
        r = http.post("/v1/jobs", json={"input": text, "voice": "alloy", "seed": 4,
                                        "max_new_tokens": 16, "response_format": "wav"})
        assert r.status_code == 202, r.text
        job = r.json()
        assert job["status"] in ("queued", "running") and job["id"].startswith("job_")
        deadline = time.monotonic() + 180
        while job["status"] not in ("succeeded", "failed") and time.monotonic() < deadline:
            time.sleep(0.5)
            job = http.get(f"/v1/jobs/{job['id']}").json()
        assert job["status"] == "succeeded", job
        assert job["progress"] == 1.0
        audio = http.get(f"/v1/jobs/{job['id']}/audio")
        assert audio.status_code == 200 and audio.headers["content-type"] == "audio/wav"
        data, rate = sf.read(io.BytesIO(audio.content))
        assert abs(len(data) / rate - job["audio_seconds"]) < 0.01
        usage = http.get("/v1/usage").json()
        assert usage["by_model"].get("CustomVoice", {}).get("characters", 0) >= len(text) - 5
    with as_tenant(graph, tenant_b) as other:
        assert other.get(f"/v1/jobs/{job['id']}").status_code == 404
        assert other.get(f"/v1/jobs/{job['id']}/audio").status_code == 404
        assert all(j["id"] != job["id"] for j in other.get("/v1/jobs").json()["data"])


def test_usage_is_per_tenant_and_admin_reads_any(graph, tenant_a, tenant_b):
    with as_tenant(graph, tenant_b) as http:
        mine = http.get("/v1/usage").json()
    with graph.client(headers={"Authorization": f"Bearer {graph.admin_token}"}) as admin:
        tenants = {t["name"]: t["id"] for t in admin.get("/admin/tenants").json()["tenants"]}
        assert tenants[mine["tenant"]] == mine["tenant_id"]
        theirs = admin.get(f"/admin/tenants/{mine['tenant']}/usage").json()
        assert theirs["requests"] == mine["requests"]


# -------------------------------------------------------------------------- handle API
def test_handle_callers_act_as_the_trusted_handle_tenant(graph):
    ingress = serve.get_app_handle(graph.app_name)
    ingress.custom_voice.remote(
        CustomVoiceInput(text="Handle usage.", speaker="Ryan", seed=77)).result(timeout_s=120)
    with graph.client(headers={"Authorization": f"Bearer {graph.admin_token}"}) as admin:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            r = admin.get("/admin/tenants/internal/usage")
            if r.status_code == 200 and r.json()["requests"] >= 1:
                break
            time.sleep(0.2)
        assert r.status_code == 200 and r.json()["requests"] >= 1


# ----------------------------------------------------------------------- two replicas
APP = "tenancy2"


@pytest.fixture(scope="module")
def two_ingress_replicas(graph) -> Iterator[str]:
    if not graph.redis:
        pytest.skip("limits across replicas need the local Redis")
    with small_app(graph, APP, ingress_replicas=2) as url:
        yield url


def test_limits_hold_across_two_ingress_replicas(graph, two_ingress_replicas):
    running = serve.status().applications[APP].deployments["TTSIngress"].replica_states
    assert running.get("RUNNING") == 2

    async def burst(key: str) -> list[int]:
        async with httpx.AsyncClient(base_url=two_ingress_replicas, timeout=300,
                                     headers={"Authorization": f"Bearer {key}"}) as client:
            responses = await asyncio.gather(*(
                client.post("/api/tts/synthesize", json={"text": "Shared limit.",
                                                         "speaker": "Ryan", "seed": 9})
                for _ in range(12)))
            return [r.status_code for r in responses]

    def attempt() -> list[int]:
        key = create_tenant_key(graph.base_url, graph.admin_token, unique_name("two"),
                                requests_per_minute=4)
        return asyncio.run(burst(key))

    codes = in_one_minute(attempt)
    assert codes.count(200) == 4 and codes.count(429) == 8, codes


# ----------------------------------------------------------------------------- logs
def test_keys_never_appear_in_the_logs(graph, tenant_a, tenant_b, saved_voice):
    import ray

    logs = Path(ray._private.worker._global_node.get_session_dir_path()) / "logs"
    secrets = [graph.api_key, tenant_a, tenant_b, graph.admin_token]
    for path in logs.rglob("*"):
        if path.is_file() and path.stat().st_size < 50_000_000:
            text = path.read_text(errors="replace")
            for secret in secrets:
                assert secret not in text, f"a key is in {path}"
