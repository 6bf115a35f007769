"""Every output marked as AI-generated (deployments.audio.marking): each of the six formats of
/v1/audio/speech carries the mark in its own metadata, read back by an independent reader
(PyAV, i.e. ffmpeg's demuxers) and by POST /v1/audio/verify; pcm and streams carry the X-AI-*
headers. Through the real routes, SynthesisService and the AudioProcessor's own class, without
Ray; and the library alone."""

from __future__ import annotations

import io
import uuid

import av
import numpy as np
import pytest
from fastapi.testclient import TestClient

from deployments.audio.codecs import encode
from deployments.audio.marking import AIMark, embed_mark, read_mark, sniff_format
from deployments.audio_processor import AudioProcessor
from deployments.engine.types import ModelInfo, ModelKind
from serve_app.app.args import AppArgs
from serve_app.app.http_app import create_http_app
from serve_app.routes.common import ReplicaServices
from serve_app.synthesis.synthesis_service import SynthesisService
from tests.fake_handles import FakeHandle, FakeModel

RATE = 24_000
FORMATS = ("wav", "mp3", "opus", "aac", "flac", "pcm")
INFO = ModelInfo(
    kind=ModelKind.CUSTOM_VOICE, model="tiny", speakers=("vivian", "ryan"), dialect_speakers={},
    languages=("auto", "chinese", "english"), sample_rate=RATE, device="cpu", dtype="float32",
    model_size="tiny",
)
AUDIO = (0.2 * np.sin(2 * np.pi * 220 * np.arange(RATE) / RATE)).astype(np.float32)


def metadata(data: bytes) -> dict[str, str]:
    """Tags as ffmpeg's demuxers read them (container and stream level), and the audio decodes."""
    with av.open(io.BytesIO(data)) as container:
        tags = {**container.metadata, **container.streams.audio[0].metadata}
        assert sum(frame.samples for frame in container.decode(audio=0)) > 0
    return {k.upper(): v for k, v in tags.items()}


@pytest.mark.parametrize("fmt", ["wav", "mp3", "opus", "aac", "flac"])
def test_each_format_carries_the_mark_an_independent_reader_sees(fmt):
    plain = encode(AUDIO, RATE, fmt)
    marked = embed_mark(plain, fmt, AIMark("VoiceClone", "req-42"))
    assert read_mark(plain) is None and sniff_format(marked) == fmt
    assert read_mark(marked) == AIMark("VoiceClone", "req-42")
    tags = metadata(marked)
    text = " ".join(tags.values())
    assert "AI_GENERATED=true" in text or tags.get("AI_GENERATED") == "true"
    assert "req-42" in text and "VoiceClone" in text and "Qwen3-TTS Serve" in text


def test_pcm_has_no_container_so_it_is_left_as_is():
    pcm = encode(AUDIO, RATE, "pcm")
    assert embed_mark(pcm, "pcm", AIMark("CustomVoice", "r")) == pcm






def client(**audio) -> TestClient:
    args = AppArgs.model_validate({"audio": audio})
    processor = AudioProcessor.func_or_class(args.audio, args.clone)
    svc = SynthesisService(args, {"CustomVoice": FakeHandle(FakeModel(INFO, AUDIO, RATE, frames=12, stream_frames=10))},
                           FakeHandle(processor))
    return TestClient(create_http_app(ReplicaServices(svc)), raise_server_exceptions=False)


def speech(http: TestClient, fmt: str, **extra):
    """(Serve's proxy sets X-Request-ID when a caller sends none; without Ray the test does.)"""
    request_id = uuid.uuid4().hex
    r = http.post("/v1/audio/speech", json={"model": "tts-1", "voice": "ryan", "input": "Hi.",
                                            "response_format": fmt, **extra},
                  headers={"X-Request-ID": request_id})
    assert r.status_code == 200, r.text
    r.request_id = request_id
    return r


@pytest.fixture(scope="module")
def http():
    with client() as c:
        yield c


@pytest.mark.parametrize("fmt", FORMATS)
def test_every_format_of_speech_is_marked_and_verified(http, fmt):
    r = speech(http, fmt)
    request_id = r.request_id
    assert r.headers["X-AI-Generated"] == "true"
    assert r.headers["X-AI-Model-Kind"] == "CustomVoice"
    assert r.headers["X-AI-Request-Id"] == request_id
    if fmt == "pcm":
        return
    assert request_id in " ".join(metadata(r.content).values())
    verified = http.post("/v1/audio/verify", content=r.content,
                         headers={"Content-Type": r.headers["content-type"]}).json()
    assert verified["marked"] and verified["format"] == fmt
    assert verified["mark"] == {"ai_generated": True, "generator": "Qwen3-TTS Serve",
                                "model_kind": "CustomVoice", "request_id": request_id}
    as_form = http.post("/v1/audio/verify", files={"file": ("speech", r.content)})
    assert as_form.json()["mark"]["request_id"] == request_id


def test_a_cached_answer_is_the_same_file_marked_by_the_request_that_made_it(http):
    first, second = speech(http, "mp3", seed=7), speech(http, "mp3", seed=7)
    assert second.headers["X-Cache"] == "hit" and second.content == first.content
    assert read_mark(second.content).request_id == first.request_id
    assert second.headers["X-AI-Request-Id"] == first.request_id


@pytest.mark.parametrize("stream_format", ["audio", "sse"])
def test_a_stream_carries_the_mark_in_its_headers(http, stream_format):
    r = speech(http, "pcm", stream_format=stream_format)
    assert r.headers["X-AI-Generated"] == "true"
    assert r.headers["X-AI-Request-Id"] == r.request_id
    assert r.headers["X-AI-Model-Kind"] == "CustomVoice"


def test_verify_says_unmarked_and_refuses_an_empty_body(http):
    plain = http.post("/v1/audio/verify", content=encode(AUDIO, RATE, "wav"),
                      headers={"Content-Type": "audio/wav"}).json()
    assert plain == {"object": "audio.verification", "format": "wav", "marked": False,
                     "mark": None, "c2pa": None}
    empty = http.post("/v1/audio/verify", content=b"", headers={"Content-Type": "audio/wav"})
    assert empty.status_code == 422 and empty.json()["error"]["param"] == "file"


def test_marking_can_be_turned_off_per_deployment():
    with client(mark_outputs=False) as http:
        r = speech(http, "flac")
        assert "X-AI-Generated" not in r.headers and read_mark(r.content) is None
        streamed = speech(http, "pcm", stream_format="audio")
        assert "X-AI-Generated" not in streamed.headers
