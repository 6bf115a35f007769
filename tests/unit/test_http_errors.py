"""The error vocabulary, end to end through the real routes and SynthesisService without Ray:
model failures, overload and timeouts become clear responses with a request id, never a
hang, and the synthesized text never reaches the logs."""

from __future__ import annotations

import asyncio
import logging

import numpy as np
import pytest
from fastapi.testclient import TestClient
from ray.serve.exceptions import BackPressureError

from deployments.engine.types import EngineError, ModelInfo, ModelKind, SynthesisResult
from serve_app.app.args import AppArgs
from serve_app.app.http_app import create_http_app
from serve_app.routes.common import ReplicaServices
from serve_app.synthesis.synthesis_service import SynthesisService
from tests.fake_handles import Remote

SECRET_TEXT = "the confidential sentence 42"
INFO = ModelInfo(
    kind=ModelKind.CUSTOM_VOICE, model="tiny", speakers=("vivian", "ryan"), dialect_speakers={},
    languages=("auto", "chinese", "english"), sample_rate=24000, device="cpu", dtype="float32",
    model_size="tiny",
)


class FakeModel:
    """Stands in for a DeploymentHandle: `.info.remote()`, `.synthesize.remote(req)`."""

    def __init__(self, synthesize):
        async def info():
            return INFO

        self.info = Remote(info)
        self.synthesize = Remote(synthesize)


def client_for(synthesize, **ingress) -> TestClient:
    args = AppArgs.model_validate({"ingress": {"retry_after_s": 3, **ingress}})
    svc = SynthesisService(args, {"CustomVoice": FakeModel(synthesize)}, audio=None)
    return TestClient(create_http_app(ReplicaServices(svc)), raise_server_exceptions=False)


def post(client: TestClient, path: str = "/api/tts/synthesize"):
    if path == "/v1/audio/speech":
        return client.post(path, json={"model": "tts-1", "voice": "ryan", "input": SECRET_TEXT})
    return client.post(path, json={"text": SECRET_TEXT, "speaker": "Vivian"})


async def _engine_fails(request):
    raise EngineError("CUDA error: device-side assert")


def test_model_error_is_500_with_request_id_and_no_text_in_logs(caplog):
    caplog.set_level(logging.DEBUG)
    response = post(client_for(_engine_fails))
    assert response.status_code == 500
    body = response.json()
    assert body["success"] is False and body["error"]["code"] == "model_error"
    assert body["error"]["request_id"] and body["error"]["request_id"] in body["error"]["message"]
    assert SECRET_TEXT not in caplog.text
    assert body["error"]["request_id"] in caplog.text  # the operator can find it


def test_openai_route_errors_have_openai_shape():
    body = post(client_for(_engine_fails), "/v1/audio/speech").json()
    assert body["error"]["type"] == "server_error" and "success" not in body


def test_full_model_queue_is_503_with_retry_after():
    async def full(request):
        raise BackPressureError(num_queued_requests=8, max_queued_requests=8)

    response = post(client_for(full))
    assert response.status_code == 503 and response.headers["Retry-After"] == "3"
    assert response.json()["error"]["code"] == "overloaded"


def test_slow_model_is_504_not_a_hang():
    async def slow(request):
        await asyncio.sleep(30)

    response = post(client_for(slow, request_timeout_s=0.2))
    assert response.status_code == 504
    assert response.json()["error"]["code"] == "timeout"


def test_success_path_renders_wav_locally():
    async def ok(request):
        audio = np.zeros(24000, dtype=np.float32)
        return SynthesisResult(audio=audio, sample_rate=24000, frames=12)

    body = post(client_for(ok)).json()
    assert body["success"] is True and body["duration"] == pytest.approx(1.0)


def test_a_full_step_loop_is_503_with_the_engines_retry_after():
    from deployments.engine.types import EngineOverloadedError

    async def full(request):
        raise EngineOverloadedError("all 8 slots and 16 waiting places are taken", 5)

    response = post(client_for(full))
    assert response.status_code == 503 and response.headers["Retry-After"] == "5"
    assert response.json()["error"]["code"] == "overloaded"


def test_a_replica_that_dies_mid_request_is_503_and_the_next_request_is_refused_at_once():
    from ray.exceptions import ActorDiedError

    calls = []

    async def dies(request):
        calls.append(request)
        raise ActorDiedError()

    client = client_for(dies)
    first = post(client)
    assert first.status_code == 503 and first.headers["Retry-After"] == "3"
    assert first.json()["error"]["code"] == "model_unavailable"
    second = post(client)
    assert second.status_code == 503 and "cannot serve right now" in second.json()["message"]
    assert len(calls) == 1  # refused without reaching the model


def test_a_remote_traceback_never_reaches_the_message():
    from ray.exceptions import RayTaskError

    from deployments.audio.errors import AudioInputError
    from deployments.engine.types import UnsupportedValueError
    from serve_app.edge.api_errors import to_api_error

    for cause in (AudioInputError("unreadable", "reference_audio could not be decoded",
                                  "reference_audio"),
                  UnsupportedValueError("speaker", "nobody", ["vivian"])):
        wrapped = RayTaskError("ServeReplica.handle_request", "Traceback (most recent call "
                               "last):\n  File \"/work/x.py\", line 1\n", cause,
                               pid=4242, ip="10.1.2.3").as_instanceof_cause()
        error = to_api_error(wrapped, retry_after_s=1, request_id="r1")
        assert error.status in (415, 422) and error.param in ("reference_audio", "speaker")
        assert "Traceback" not in error.message and "4242" not in error.message
        assert error.message == (cause.message if hasattr(cause, "message") else cause.args[0])


@pytest.mark.parametrize("path", ["/api/tts/synthesize", "/v1/audio/speech", "/v1/audio/design",
                                  "/v1/audio/clone"])
def test_a_full_replica_refuses_synthesis_before_reading_the_request(path):
    """MAX_CONCURRENT requests in flight: a synthesis request is refused with 503 +
    Retry-After before anything else is done with it (its body, even one that is not valid,
    is never read; its key never checked), while other routes still answer."""
    client = client_for(_engine_fails, max_concurrent=1)
    service = client.app.state.replica.service
    service.in_flight = 1  # as if one request were being synthesized
    response = client.post(path, content=b"not json", headers={"Content-Type": "application/json"})
    assert response.status_code == 503 and response.headers["Retry-After"] == "3"
    assert response.json()["error"]["code"] == "overloaded"
    assert "MAX_CONCURRENT" in response.json()["error"]["message"]
    assert client.get("/livez").status_code == 200
    service.in_flight = 0
    assert client.post(path, content=b"not json",
                       headers={"Content-Type": "application/json"}).status_code in (400, 415, 422)
