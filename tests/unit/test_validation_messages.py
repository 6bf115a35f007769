"""Validation errors read as one sentence naming the field, the problem and what is allowed
(issue 20), the same on every surface: HTTP (FastAPI's request validation), the WebSocket
and the handle API (pydantic errors through serve_app.edge.api_errors.validation_error)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from serve_app.edge.api_errors import to_api_error, validation_error
from serve_app.protocol.session_api import SessionSettings
from tests.unit.test_http_errors import client_for


async def _never(request):  # every request here is refused before synthesis
    raise AssertionError("not called")


@pytest.fixture(scope="module")
def client():
    return client_for(_never, max_text_chars=20)


def _error(response) -> dict:
    assert response.status_code == 422, response.text
    return response.json()["error"]


@pytest.mark.parametrize(("path", "body", "param", "message"), [
    ("/api/tts/synthesize", {"text": "Hi.", "seed": -5}, "seed", "seed must be 0 or more."),
    ("/api/tts/synthesize", {"text": ""}, "text", "text must not be empty."),
    ("/api/tts/synthesize", {"text": "Hi.", "speed": 9}, "speed", "speed must be 2.0 or less."),
    ("/api/tts/synthesize", {"text": "Hi.", "seed": "7"}, "seed",
     'seed must be a whole number written as a JSON integer (such as 7, not "7" or 7.0).'),
    ("/api/tts/synthesize", {}, "text", "text is required."),
    ("/v1/audio/speech", {"model": "tts-1", "voice": "alloy", "input": "   "}, "input",
     "input must contain something to speak, not only whitespace."),
    ("/v1/audio/design", {"input": "Hi.", "description": "Calm.", "colour": 1}, "colour",
     "colour is not a field of this request; check its spelling (see /docs)."),
])
def test_http_validation_is_one_sentence_naming_field_problem_and_allowed(
        client, path, body, param, message):
    error = _error(client.post(path, json=body))
    assert (error["param"], error["message"]) == (param, message)


def test_a_body_that_is_not_json_says_so(client):
    error = _error(client.post("/api/tts/synthesize", content=b"{nope",
                               headers={"Content-Type": "application/json"}))
    assert error["message"].startswith("The request body is not valid JSON")


def test_over_long_text_says_the_limit_and_that_a_job_takes_longer_text(client):
    error = _error(client.post("/api/tts/synthesize", json={"text": "x" * 25}))
    assert error["message"] == ("text is 25 characters long; at most 20 fit in one request, "
                                "and a job (POST /v1/jobs) takes longer text.")


def test_the_websocket_and_handle_api_use_the_same_sentence():
    with pytest.raises(ValidationError) as raised:
        SessionSettings(seed=-1)
    error = validation_error(raised.value)
    assert (error.status, error.param, error.message) == (422, "seed", "seed must be 0 or more.")
    assert to_api_error(raised.value, retry_after_s=1, request_id="r").message == error.message
    with pytest.raises(ValidationError) as raised:
        SessionSettings(mode="loud")
    assert validation_error(raised.value).message == (
        "mode must be one of 'sentence' or 'incremental'.")
