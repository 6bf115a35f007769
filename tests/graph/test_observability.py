"""Metrics, request ids in logs and the probes, on the shared graph (issue 5)."""

from __future__ import annotations

import json
import re
import time
import uuid
from pathlib import Path

import httpx
import pytest

from deployments.metrics import EXPORTED_NAMES

DASHBOARD = Path(__file__).resolve().parents[2] / "cluster" / "grafana-dashboard.json"
#: Counters the dashboard plots that are written only when what they count happens (a late
#: chunk, a refused stream): Ray exports a counter from its first increment, so a quiet graph
#: has none. They must still be among EXPORTED_NAMES (the last assertion).
WRITTEN_WHEN_IT_HAPPENS = {"ray_qtts_engine_late_chunks_total", "ray_qtts_engine_refused_total"}


def _serve_logs_dir() -> Path:
    import ray

    return Path(ray._private.worker._global_node.get_session_dir_path()) / "logs" / "serve"


def _json_lines(request_id: str) -> list[dict]:
    lines = []
    for path in _serve_logs_dir().glob("replica_*.log"):
        for raw in path.read_text(errors="replace").splitlines():
            if request_id in raw and raw.startswith("{"):
                lines.append(json.loads(raw))
    return lines


def _wait_for(check, timeout_s: float):
    deadline = time.monotonic() + timeout_s
    while True:
        result = check()
        if result or time.monotonic() > deadline:
            return result
        time.sleep(0.5)


def test_request_id_is_returned_and_in_every_deployments_log_lines(http):
    request_id = f"trace-{uuid.uuid4().hex[:12]}"
    secret_text = f"Sentinel {uuid.uuid4().hex} must never reach a log."
    response = http.post("/api/tts/synthesize", headers={"X-Request-ID": request_id},
                         json={"text": secret_text, "speaker": "Ryan", "seed": 7, "speed": 1.25})
    assert response.status_code == 200
    assert response.headers["X-Request-ID"] == request_id

    # ingress (route + service log), the model replica, and AudioProcessor (speed != 1)
    expected = {"TTSIngress", "CustomVoice", "AudioProcessor"}

    def deployments_seen() -> set[str]:
        # Serve writes "<application>_<deployment>"
        return {str(line.get("deployment")).rsplit("_", 1)[-1] for line in _json_lines(request_id)}

    _wait_for(lambda: expected <= deployments_seen(), 10)
    assert expected <= deployments_seen()
    ours = [line for line in _json_lines(request_id) if line["message"].startswith("synthesized ")]
    assert ours and ours[0]["levelname"] == "INFO"  # the project's own logger, as JSON
    logs = "".join(p.read_text(errors="replace") for p in _serve_logs_dir().glob("*.log"))
    assert secret_text not in logs and "Sentinel" not in logs


def test_an_error_carries_the_request_id_it_was_sent_with(http):
    response = http.post("/api/tts/synthesize", headers={"X-Request-ID": "trace-err-1"},
                         json={"text": "Hi.", "speaker": "Nobody"})
    assert response.status_code == 422
    assert response.headers["X-Request-ID"] == "trace-err-1"
    assert response.json()["error"]["request_id"] == "trace-err-1"


def _dashboard_series() -> set[str]:
    panels = json.loads(DASHBOARD.read_text())["panels"]
    return {m for p in panels for t in p["targets"] for m in re.findall(r"\bray_qtts_[a-z_]+", t["expr"])}


def test_metrics_appear_on_the_metrics_endpoint_with_the_dashboards_names(graph, http):
    assert http.post("/api/tts/synthesize", json={
        "text": "Metrics please.", "speaker": "Vivian", "seed": 4242}).status_code == 200
    assert http.post("/api/tts/synthesize", json={
        "text": "Metrics please.", "speaker": "Vivian", "seed": 4242}).json()["message"] == "cached"
    assert http.post("/api/tts/synthesize", json={"text": "x", "speaker": "Nobody"}).status_code == 422
    with http.stream("POST", "/v1/audio/speech", json={  # a stream: its chunks' margins
            "model": "tts-1", "voice": "alloy", "input": "Streamed metrics, chunk by chunk.",
            "response_format": "pcm", "stream_format": "audio", "seed": 5}) as response:
        assert response.status_code == 200
        assert b"".join(response.iter_bytes())
    wanted = _dashboard_series()

    def scrape() -> str:
        try:
            return httpx.get(graph.metrics_url, timeout=10).text
        except httpx.HTTPError:
            return ""

    # exported every second, with some lag: wait for every series and label we expect
    patterns = [rf"^{name}[{{ ]" for name in wanted - WRITTEN_WHEN_IT_HAPPENS] + [
        r'^ray_qtts_audio_seconds_total\{[^}]*model_kind="custom_voice"',
        r'^ray_qtts_errors_total\{[^}]*code="invalid_value"[^}]*status="422"',
        r'^ray_qtts_requests_total\{[^}]*outcome="cached"',
        r'^ray_qtts_queue_length\{[^}]*stage="model"',
    ]

    def missing() -> list[str]:
        body = scrape()
        return [p for p in patterns if not re.search(p, body, re.M)]

    _wait_for(lambda: not missing(), 40)
    assert (left := missing()) == [], left
    assert {s for series in EXPORTED_NAMES.values() for s in series} >= wanted


def test_liveness_and_readiness_probes(http):
    assert http.get("/livez").json() == {"status": "alive"}
    ready = http.get("/readyz")
    assert ready.status_code == 200, ready.text
    assert set(ready.json()["deployments"].values()) == {"ready"}


def test_health_reports_replicas_and_warmed_models_per_deployment_to_the_admin(graph, http):
    admin = {"Authorization": f"Bearer {graph.admin_token}"}
    deployments = http.get("/api/health", headers=admin).json()["deployments"]
    assert set(deployments) == {"CustomVoice", "VoiceDesign", "VoiceClone", "AudioProcessor",
                                "ForcedAligner", "TTSIngress"}
    for name in ("CustomVoice", "VoiceDesign", "VoiceClone"):
        entry = deployments[name]
        assert entry["status"] == "ready" and entry["replicas_running"] == 1, entry
        assert entry["loaded"] is True and entry["warmed"] is True and entry["device"] == "cpu"
    assert deployments["AudioProcessor"]["replicas_running"] >= 1


@pytest.mark.parametrize("credentials", [None, "api_key", "wrong_admin_token"])
def test_public_health_says_each_deployments_status_and_nothing_more(graph, credentials):
    """Without the admin token (no credentials, a tenant's API key, a wrong token) health
    names each deployment's status: no model path, load time, replica or slot count."""
    headers = {None: {}, "api_key": graph.auth,
               "wrong_admin_token": {"Authorization": "Bearer not-the-admin-token"}}[credentials]
    with httpx.Client(base_url=graph.base_url, timeout=60) as client:
        r = client.get("/api/health", headers=headers)
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) == {"status", "model_loaded", "device", "concurrent_tasks",
                         "uptime_seconds", "deployments"}
    for name, entry in body["deployments"].items():
        assert entry == {"status": "ready"}, (name, entry)
    assert "tiny-models" not in r.text and "load_seconds" not in r.text


@pytest.mark.parametrize("path", ["/livez", "/readyz"])
def test_probes_are_in_the_openapi_document(http, path):
    assert path in http.get("/openapi.json").json()["paths"]


def _histogram_count(body: str, name: str, model_kind: str) -> float:
    pattern = rf'^ray_{name}_count\{{[^}}]*model_kind="{model_kind}"[^}}]*\}} ([0-9.e+]+)'
    return sum(float(v) for v in re.findall(pattern, body, re.M))


def test_streamed_synthesis_is_measured_too(graph, http):
    from deployments.metrics import SYNTHESIS_TIME, TIME_TO_FIRST_AUDIO

    def counts() -> tuple[float, float]:
        try:
            body = httpx.get(graph.metrics_url, timeout=10).text
        except httpx.HTTPError:
            body = ""
        return (_histogram_count(body, TIME_TO_FIRST_AUDIO, "voice_design"),
                _histogram_count(body, SYNTHESIS_TIME, "voice_design"))

    time.sleep(2)  # let earlier observations reach the exporter
    before = counts()
    with http.stream("POST", "/v1/audio/design", json={
            "input": "Streamed metrics.", "description": "A calm voice.", "seed": 77,
            "response_format": "pcm", "stream_format": "audio"}) as response:
        assert response.status_code == 200
        assert b"".join(response.iter_bytes())
    grown = _wait_for(lambda: all(a > b for a, b in zip(counts(), before, strict=True)), 40)
    assert grown, (before, counts())
