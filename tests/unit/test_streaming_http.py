"""HTTP framing of streams (no Ray): SSE event order and payloads, and what a failure in the
middle of a stream looks like on each shape."""

from __future__ import annotations

import base64
import contextlib
import json

import numpy as np
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from deployments.audio import RenderOptions
from deployments.engine.types import AudioChunk, EngineError
from serve_app.routes.stream_responses import audio_stream_response, sse_response
from serve_app.synthesis.audio_stream import AudioStream, ModelStream

RATE = 24_000


class FakeModelStream:
    """What the ingress gets from `handle.options(stream=True)`: chunks, then maybe a failure."""

    def __init__(self, chunks: list[AudioChunk], fail_with: Exception | None = None):
        self._chunks = list(chunks)
        self._fail = fail_with
        self.cancelled = False

    async def __anext__(self) -> AudioChunk:
        if self._chunks:
            return self._chunks.pop(0)
        if self._fail is not None:
            raise self._fail
        raise StopAsyncIteration

    def cancel(self) -> None:
        self.cancelled = True


def chunk(index: int, frames: int, final: bool = False) -> AudioChunk:
    audio = (0.1 * np.sin(np.arange(frames * 1920) / 7)).astype(np.float32)
    return AudioChunk(audio=audio, sample_rate=RATE, index=index, frames=frames, final=final,
                      total_frames=7, input_tokens=5)


def app_for(source: FakeModelStream, shape: str, released: list[bool]) -> FastAPI:
    app = FastAPI()

    @app.post("/s")
    async def s():
        release = contextlib.AsyncExitStack()
        release.callback(lambda: released.append(True))
        first = await source.__anext__()
        stream = AudioStream(ModelStream(source, first, "rid-1", 0.0, 30.0, release),
                             RenderOptions(format="pcm"))
        return sse_response(stream) if shape == "sse" else audio_stream_response(stream)

    return app


def events(text: str) -> list[dict]:
    return [json.loads(line[6:]) for line in text.splitlines() if line.startswith("data: ")]


def test_sse_deltas_in_order_then_done_with_usage():
    released: list[bool] = []
    source = FakeModelStream([chunk(0, 1), chunk(1, 3), chunk(2, 3, final=True)])
    with TestClient(app_for(source, "sse", released)) as client:
        r = client.post("/s")
    got = events(r.text)
    assert [e["type"] for e in got] == ["speech.audio.delta"] * 3 + ["speech.audio.done"]
    sizes = [len(base64.b64decode(e["audio"])) for e in got[:3]]
    assert sizes == [1920 * 2, 3 * 1920 * 2, 3 * 1920 * 2]
    assert got[-1]["usage"] == {"input_tokens": 5, "output_tokens": 7, "total_tokens": 12}
    assert released == [True] and not source.cancelled


def test_sse_failure_mid_stream_sends_an_error_event_with_the_request_id(caplog):
    released: list[bool] = []
    source = FakeModelStream([chunk(0, 1), chunk(1, 3)], fail_with=EngineError("boom"))
    with TestClient(app_for(source, "sse", released)) as client:
        r = client.post("/s")
    got = events(r.text)
    assert [e["type"] for e in got] == ["speech.audio.delta", "speech.audio.delta", "error"]
    assert got[-1]["error"]["request_id"] == "rid-1" and "done" not in r.text
    assert released == [True] and source.cancelled
    assert any("rid-1" in rec.getMessage() for rec in caplog.records)


def test_raw_audio_failure_mid_stream_breaks_the_response():
    released: list[bool] = []
    source = FakeModelStream([chunk(0, 1)], fail_with=EngineError("boom"))
    with TestClient(app_for(source, "audio", released)) as client, pytest.raises(EngineError):
        client.post("/s")  # the server aborts the body: no terminating chunk reaches a client
    assert released == [True] and source.cancelled
