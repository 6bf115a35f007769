"""The published contract without Ray: the document the app builds (every error status with the
envelope, security, uploads, audio types), a 405 that names every method of its path, and
Serve's access-log line of a stream cut short marked `aborted`. The fuzzing of the real graph
against the same document is tests/graph/test_contract.py."""

from __future__ import annotations

import logging

import pytest
from fastapi.testclient import TestClient

from deployments.logging_setup import SERVE_LOGGER, AbortedResponses, mark_aborted
from serve_app.app.args import AppArgs
from serve_app.app.http_app import create_http_app
from serve_app.routes.common import ReplicaServices
from serve_app.routes.contract import ERROR_STATUSES
from serve_app.synthesis.synthesis_service import SynthesisService
from tests.unit.test_http_errors import FakeModel


async def _never(request):
    raise AssertionError("no synthesis in these tests")


@pytest.fixture(scope="module")
def client() -> TestClient:
    svc = SynthesisService(AppArgs.model_validate({}), {"CustomVoice": FakeModel(_never)},
                           audio=None)
    return TestClient(create_http_app(ReplicaServices(svc)), raise_server_exceptions=False)


@pytest.fixture(scope="module")
def spec(client) -> dict:
    return client.get("/openapi.json").json()


def _operations(spec):
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            yield path, method, operation


def test_every_error_status_is_declared_with_the_envelope(spec):
    assert "HTTPValidationError" not in spec["components"]["schemas"]
    for path, method, operation in _operations(spec):
        responses = operation["responses"]
        assert "500" in responses, (method, path)
        for status, answer in responses.items():
            if int(status) >= 400 and path != "/readyz":
                schema = answer["content"]["application/json"]["schema"]
                assert schema == {"$ref": "#/components/schemas/ErrorEnvelope"}, (method, path)
                assert int(status) in ERROR_STATUSES


def test_keys_are_declared_where_they_are_required(spec):
    for path, method, operation in _operations(spec):
        public = path in ("/", "/livez", "/readyz", "/api/health", "/v1/audio/models")
        if public:
            assert "security" not in operation, path
        elif path == "/v1/audio/voices":  # a key is optional there; a wrong one is a 401
            assert {} in operation["security"] and "401" in operation["responses"]
        else:
            assert operation["security"] == [{"bearer": []}, {"apiKey": []}], path
            assert {"401", "403"} <= set(operation["responses"]), (method, path)


def test_uploads_and_audio_answers_are_declared(spec):
    paths = spec["paths"]
    clone = paths["/v1/audio/clone"]["post"]["requestBody"]["content"]
    assert clone["multipart/form-data"]["schema"]["properties"]["reference_audio"]["format"] == "binary"
    assert "reference_audio" in clone["application/json"]["schema"]["required"]
    voice = paths["/v1/voices"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert len(voice["anyOf"]) == 2  # a clone (with its data URL) or a design
    for path, method in (("/api/tts/audio/{key}", "get"), ("/v1/jobs/{job_id}/audio", "get"),
                         ("/v1/audio/speech", "post"), ("/v1/audio/design", "post")):
        content = paths[path][method]["responses"]["200"]["content"]
        assert {"audio/wav", "audio/mpeg", "audio/ogg"} <= set(content), path
        # JSON only where `timestamps: "word"` makes the answer the audio and its words
        timed = {"schema": {"$ref": "#/components/schemas/TimedAudio"}}
        assert content.get("application/json") == (timed if method == "post" else None), path
    speech = spec["components"]["schemas"]["SpeechRequest"]["properties"]
    assert speech["model"]["enum"] == ["CustomVoice", "tts-1", "tts-1-hd", "gpt-4o-mini-tts"]
    ingress = AppArgs.model_validate({}).ingress  # the text limits come from the settings
    assert speech["input"]["maxLength"] == ingress.max_text_chars
    assert speech["instructions"]["anyOf"][0]["maxLength"] == ingress.max_instruction_chars


@pytest.mark.parametrize("method, path, allowed", [
    ("PUT", "/v1/jobs", "GET, POST"), ("POST", "/v1/voices/v1", "DELETE, GET"),
    ("GET", "/v1/audio/speech", "POST"),
])
def test_a_405_names_every_method_of_its_path(client, method, path, allowed):
    r = client.request(method, path)
    assert r.status_code == 405
    assert r.headers["allow"] == allowed
    assert r.json()["error"]["code"] == "method_not_allowed"


def _access_line(request_id: str, status: str = "200") -> logging.LogRecord:
    return logging.LogRecord(SERVE_LOGGER, logging.INFO, __file__, 1,
                             f"POST /v1/audio/speech {status} 812.3ms", (), None)


def test_the_access_log_marks_a_stream_cut_short():
    marker = AbortedResponses()
    marker.mark("req-1")
    cut, whole = _access_line("req-1"), _access_line("req-2")
    for record, request_id in ((cut, "req-1"), (whole, "req-2")):
        record.request_id, record.serve_access_log = request_id, True
        marker.filter(record)
    assert cut.getMessage() == "POST /v1/audio/speech 200 aborted 812.3ms"
    assert whole.getMessage() == "POST /v1/audio/speech 200 812.3ms"


def test_marks_go_to_one_filter_on_serves_logger_and_stay_bounded():
    serve_logger = logging.getLogger(SERVE_LOGGER)
    before = list(serve_logger.filters)
    try:
        for i in range(AbortedResponses.KEEP + 10):
            mark_aborted(f"r{i}")
        mark_aborted(None)  # outside a Serve request: nothing to mark
        markers = [f for f in serve_logger.filters if isinstance(f, AbortedResponses)]
        assert len(markers) == 1 and len(markers[0]._marked) == AbortedResponses.KEEP
    finally:
        serve_logger.filters = before


def test_a_body_that_is_not_text_is_a_declared_400(client, spec):
    r = client.post("/v1/audio/speech", content=b"\xff",
                    headers={"content-type": "application/json"})
    assert r.status_code == 400 and r.json()["error"]["code"] == "bad_request"
    assert "400" in spec["paths"]["/v1/audio/speech"]["post"]["responses"]


def test_the_edge_marks_a_response_that_fails_after_its_headers(monkeypatch):
    """The edge (serve_app.edge.http_edge) marks the Serve request id of a response cut short."""
    from fastapi import FastAPI
    from fastapi.responses import StreamingResponse

    import serve_app.edge.http_edge as http_edge

    marked: list[str | None] = []
    monkeypatch.setattr(http_edge, "current_request_id", lambda: "serve-id-7")
    monkeypatch.setattr(http_edge, "mark_aborted", marked.append)
    app = FastAPI()

    @app.get("/cut")
    async def cut() -> StreamingResponse:
        async def body():
            yield b"RIFF"
            raise RuntimeError("the model replica died")

        return StreamingResponse(body(), media_type="audio/wav")

    @app.get("/whole")
    async def whole() -> StreamingResponse:
        async def body():
            yield b"RIFF"

        return StreamingResponse(body(), media_type="audio/wav")

    client = TestClient(http_edge.EdgeMiddleware(app, retry_after_s=lambda: 1))
    with pytest.raises(RuntimeError):
        client.get("/cut")
    assert client.get("/whole").content == b"RIFF"
    assert marked == ["serve-id-7"]
