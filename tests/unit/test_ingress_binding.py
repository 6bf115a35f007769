"""Routes are bound to the app of the replica serving them (issue 10): each app built for its
own services answers from those, with no process-global slot between them."""

from __future__ import annotations

import numpy as np
from fastapi.testclient import TestClient

from deployments.engine.types import SynthesisResult
from serve_app.app.args import AppArgs
from serve_app.app.http_app import create_http_app
from serve_app.routes.common import ReplicaServices
from serve_app.synthesis.synthesis_service import SynthesisService
from tests.unit.test_http_errors import FakeModel


def _app(seconds: float, **ingress) -> TestClient:
    async def synthesize(request):
        return SynthesisResult(audio=np.zeros(int(24000 * seconds), np.float32),
                               sample_rate=24000, frames=1)

    args = AppArgs.model_validate({"ingress": ingress})
    svc = SynthesisService(args, {"CustomVoice": FakeModel(synthesize)}, audio=None)
    return TestClient(create_http_app(ReplicaServices(svc)), raise_server_exceptions=False)


def test_two_apps_in_one_process_each_answer_from_their_own_service():
    short, long = _app(0.5), _app(2.0, max_text_chars=10)
    body = {"text": "Hello.", "speaker": "Vivian"}
    assert short.post("/api/tts/synthesize", json=body).json()["duration"] == 0.5
    assert long.post("/api/tts/synthesize", json=body).json()["duration"] == 2.0
    too_long = {"text": "A text past ten characters.", "speaker": "Vivian"}
    assert short.post("/api/tts/synthesize", json=too_long).status_code == 200
    assert long.post("/api/tts/synthesize", json=too_long).status_code == 422
