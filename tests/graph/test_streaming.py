"""Streaming through the whole graph: HTTP (chunked audio, SSE, seed, design, clone), the
handle API, refusals, and a client that goes away mid-stream."""

from __future__ import annotations

import base64
import io
import json
import time

import av
import numpy as np
import pytest
import soundfile as sf
from ray import serve

from deployments.audio import RenderOptions
from serve_app.edge.api_errors import ApiError
from serve_app.protocol.speech import AudioStreamChunk, CustomVoiceInput
from tests.samples import wav_bytes

TEXT = "Streaming through the whole graph, one chunk at a time."


def speech(**kw) -> dict:
    return {"model": "tts-1", "input": TEXT, "voice": "vivian", "seed": 4, **kw}


def pcm(data: bytes) -> np.ndarray:
    return np.frombuffer(data, "<i2").astype(np.int32)


def sse_events(raw: str) -> list[dict]:
    return [json.loads(line[6:]) for line in raw.splitlines() if line.startswith("data: ")]


def test_streamed_audio_equals_the_non_streamed_audio_and_arrives_in_chunks(http):
    whole = http.post("/v1/audio/speech", json=speech(response_format="pcm"))
    assert whole.status_code == 200
    pieces = []
    with http.stream("POST", "/v1/audio/speech",
                     json=speech(response_format="pcm", stream_format="audio")) as r:
        assert r.status_code == 200 and r.headers["content-type"] == "audio/pcm"
        assert r.headers.get("transfer-encoding") == "chunked"
        pieces = [p for p in r.iter_raw() if p]
    streamed = pcm(b"".join(pieces))
    reference = pcm(whole.content)
    assert streamed.size == reference.size
    assert np.abs(streamed - reference).max() <= 1  # float diff < 1e-4 -> at most 1 LSB
    assert len(pieces) >= 2


@pytest.mark.parametrize("stream_format", ["audio", "sse"])
def test_streamed_responses_carry_one_request_id(http, stream_format):
    r = http.post("/v1/audio/speech", headers={"X-Request-ID": "one-id-only"},
                  json=speech(response_format="pcm", stream_format=stream_format))
    assert r.status_code == 200
    assert r.headers.get_list("X-Request-ID") == ["one-id-only"]


def test_sse_sends_deltas_then_done_with_usage(http):
    r = http.post("/v1/audio/speech",
                  json=speech(response_format="pcm", stream_format="sse", seed=5))
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    events = sse_events(r.text)
    types = [e["type"] for e in events]
    assert types[-1] == "speech.audio.done" and set(types[:-1]) == {"speech.audio.delta"}
    assert len(types) >= 2
    audio = b"".join(base64.b64decode(e["audio"]) for e in events[:-1])
    whole = http.post("/v1/audio/speech", json=speech(response_format="pcm", seed=5)).content
    assert np.abs(pcm(audio) - pcm(whole)).max() <= 1 and len(audio) == len(whole)
    usage = events[-1]["usage"]
    assert usage["output_tokens"] == len(whole) // 2 // 1920
    assert usage["input_tokens"] > 0
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]


@pytest.mark.parametrize("fmt", ["wav", "mp3", "opus", "aac", "flac"])
def test_each_streaming_format_decodes(http, fmt):
    r = http.post("/v1/audio/speech", json=speech(response_format=fmt, stream_format="audio"))
    assert r.status_code == 200
    if fmt == "wav":
        audio, rate = sf.read(io.BytesIO(r.content))
    else:
        with av.open(io.BytesIO(r.content)) as box:
            stream = box.streams.audio[0]
            audio = np.concatenate([f.to_ndarray().reshape(-1) for f in box.decode(stream)])
            rate = stream.codec_context.sample_rate
    assert rate == (48000 if fmt == "opus" else 24000) and audio.size > 0


def test_seed_endpoint_streams_a_wav_when_asked(http):
    body = {"text": TEXT, "speaker": "Vivian", "language": "en", "enable_streaming": True,
            "seed": 4}
    with http.stream("POST", "/api/tts/synthesize", json=body) as r:
        assert r.status_code == 200 and r.headers["content-type"] == "audio/wav"
        assert r.headers["X-Sample-Rate"] == "24000"
        data = r.read()
    audio, rate = sf.read(io.BytesIO(data), dtype="int16")
    assert rate == 24000 and audio.size > 0 and audio.size % 1920 == 0


def test_speed_or_pitch_while_streaming_is_a_400_naming_the_field(http):
    seed = http.post("/api/tts/synthesize",
                     json={"text": TEXT, "enable_streaming": True, "pitch": 1.2})
    assert seed.status_code == 400 and seed.json()["error"]["param"] == "pitch"
    openai = http.post("/v1/audio/speech", json=speech(stream_format="sse", speed=1.5))
    assert openai.status_code == 400 and openai.json()["error"]["param"] == "speed"


def test_request_errors_come_before_the_stream_as_json(http):
    r = http.post("/v1/audio/speech", json=speech(voice="nobody", stream_format="audio"))
    assert r.status_code == 422 and r.json()["error"]["param"] == "voice"


def test_design_and_clone_stream(http):
    design = http.post("/v1/audio/design", json={
        "input": TEXT, "description": "A bright, quick voice.", "response_format": "mp3",
        "stream_format": "audio", "seed": 2})
    assert design.status_code == 200 and design.headers["content-type"] == "audio/mpeg"
    with av.open(io.BytesIO(design.content)) as box:
        assert sum(f.samples for f in box.decode(box.streams.audio[0])) > 0
    clone = http.post(
        "/v1/audio/clone",
        files={"reference_audio": ("ref.wav", wav_bytes(2.0), "audio/wav")},
        data={"input": TEXT, "ref_text": "Reference words.", "response_format": "pcm",
              "stream_format": "sse", "seed": "3"},
    )
    assert clone.status_code == 200
    events = sse_events(clone.text)
    assert events[-1]["type"] == "speech.audio.done"
    assert sum(len(base64.b64decode(e["audio"])) for e in events[:-1]) % (2 * 1920) == 0


def test_handle_streaming_method(graph):
    ingress = serve.get_app_handle(graph.app_name)
    inp = CustomVoiceInput(text=TEXT, speaker="Ryan", seed=6, output=RenderOptions(format="pcm"))
    chunks: list[AudioStreamChunk] = list(ingress.options(stream=True).stream.remote(inp))
    assert chunks[-1].final and chunks[-1].usage is not None
    assert not any(c.final for c in chunks[:-1])
    whole = ingress.custom_voice.remote(inp).result(timeout_s=120)
    assert np.abs(pcm(b"".join(c.audio for c in chunks)) - pcm(whole.audio)).max() <= 1
    with pytest.raises(ApiError) as err:
        bad = CustomVoiceInput(text=TEXT, speaker="Nobody")
        list(ingress.options(stream=True).stream.remote(bad))
    assert err.value.status == 422 and err.value.param == "speaker"


def _stats(graph) -> dict:
    handle = serve.get_deployment_handle("CustomVoice", graph.app_name)
    return handle.stream_stats.remote().result(timeout_s=30)


def test_a_client_that_disconnects_stops_generation(graph, http):
    """The random checkpoint stops at random: try seeds until a stream is still generating
    when the client goes away (deterministic per seed)."""
    for seed in range(20):
        before = _stats(graph)
        body = speech(response_format="pcm", stream_format="audio", seed=seed,
                      max_new_tokens=2000)
        with graph.client() as client, client.stream("POST", "/v1/audio/speech", json=body) as r:
            assert r.status_code == 200
            next(r.iter_raw())  # first audio arrived; now hang up
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            stats = _stats(graph)
            if stats["active"] == 0:
                break
            time.sleep(0.1)
        assert stats["active"] == 0, "generation still running after the client left"
        if stats["streams_cancelled"] > before["streams_cancelled"]:
            break
    else:
        pytest.fail("no seed in 0..19 made a stream long enough to interrupt")
    frames = stats["frames_generated"]
    time.sleep(0.5)
    assert _stats(graph)["frames_generated"] == frames  # nothing generates in the background
    assert frames - before["frames_generated"] < 1999
    r = http.post("/v1/audio/speech", json=speech(response_format="pcm", max_new_tokens=8))
    assert r.status_code == 200  # the replica serves the next request


def _object_store_created_bytes() -> int:
    """Bytes ever created in the local Ray's object store (every node's, cumulative)."""
    import ray
    from ray._private.internal_api import get_memory_info_reply, get_state_from_address

    state = get_state_from_address(ray.get_runtime_context().gcs_address)
    return get_memory_info_reply(state).store_stats.cumulative_created_bytes


def test_streamed_chunks_travel_inline_not_through_the_object_store(http):
    """SERVE_ENV's `RAY_max_direct_call_object_size` (1 MiB): a chunk is a Ray item twice (the
    replica's float PCM to the ingress, up to 368 KB at 48 frames; the ingress's pcm to the
    proxy, half that), and each goes in its reply instead of through the object store (a
    put, a seal, a fetch). With Ray's 100 KiB every item over it (from about 13 frames of
    float PCM) went there: about three times the pcm's bytes for this stream. Up to three tries, each with a seed of its
    own (no cache hit): another test's leftover work may create objects meanwhile."""
    created = []
    for seed in range(3):
        before = _object_store_created_bytes()
        body = speech(response_format="pcm", stream_format="audio", seed=100 + seed,
                      min_frames=300, max_new_tokens=301)
        with http.stream("POST", "/v1/audio/speech", json=body) as r:
            assert r.status_code == 200
            size = sum(len(piece) for piece in r.iter_bytes())
        assert size == 300 * 1920 * 2  # 24 s of 16-bit samples at 24 kHz
        created.append(_object_store_created_bytes() - before)
        if created[-1] < size // 4:
            break
    assert min(created) < size // 4, f"object store grew by {created} bytes per {size}-byte stream"
