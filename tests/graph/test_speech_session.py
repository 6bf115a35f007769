"""Speech sessions through the whole graph: WebSocket /v1/audio/speech/stream and the handle
method TTSIngress.speech_session, with a client that sends text in pieces, in sentence mode
(each sentence a request) and incremental mode (one engine slot reads the text as it comes)."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from dataclasses import dataclass, field
from itertools import pairwise

import numpy as np
import pytest
from ray import serve
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from serve_app.edge.api_errors import ApiError
from serve_app.protocol.session_api import SessionAudio, SessionDone, SessionSettings
from serve_app.sessions.speech_session import TextFeed
from tests.graph.tenants import (
    create_tenant_key,
    in_one_minute,
    save_clone_voice,
    unique_name,
    usage_of,
)
from tests.waiting import wait_for

PATH = "/v1/audio/speech/stream"
TEXT = ("Hello there, this is the first sentence. Here comes a second one! "
        "And is this the third? The last words close it.")
#: Short, known lengths on the random checkpoint: every sentence 4..8 frames.
SHORT = {"min_frames": 4, "max_new_tokens": 8}


def ws_url(graph) -> str:
    return graph.base_url.replace("http://", "ws://") + PATH


def open_socket(graph, key: str | None = None):
    headers = {"Authorization": f"Bearer {key}"} if key else None
    return connect(ws_url(graph), additional_headers=headers, open_timeout=60,
                   max_size=None, close_timeout=30)


def settings(**kw) -> str:
    return json.dumps({"type": "session", "model": "tts-1", "voice": "vivian", "seed": 3,
                       "response_format": "pcm", **SHORT, **kw})


def words(text: str) -> list[str]:
    """An LLM's tokens: words with their leading spaces."""
    out, start = [], 0
    for i in range(1, len(text)):
        if text[i] == " ":
            out.append(text[start:i])
            start = i
    return out + [text[start:]]


@dataclass
class Received:
    events: list[dict] = field(default_factory=list)
    frames: list[tuple[dict, bytes]] = field(default_factory=list)  # (audio.span, its bytes)
    close_code: int | None = None
    first_audio: threading.Event = field(default_factory=threading.Event)

    @property
    def audio(self) -> bytes:
        return b"".join(data for _, data in self.frames)

    def of(self, kind: str) -> list[dict]:
        return [e for e in self.events if e["type"] == kind]


def receive_all(ws, got: Received, timeout: float = 120, close_after_done: bool = True) -> Received:
    """Every message until the socket closes; binary frames paired with their span event.
    After `done` the client closes, as the protocol asks (the server closes on errors)."""
    pending: dict | None = None
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            message = ws.recv(timeout=deadline - time.monotonic())
            if isinstance(message, bytes):
                assert pending is not None and pending["bytes"] == len(message)
                got.frames.append((pending, message))
                pending = None
                got.first_audio.set()
                continue
            event = json.loads(message)
            got.events.append(event)
            if event["type"] == "done" and close_after_done:
                ws.close()
            if event["type"] == "audio.span":
                assert pending is None, "a span event came without its frame"
                pending = event
    except ConnectionClosed:
        pass
    got.close_code = ws.close_code
    return got


def model_stats(graph) -> dict:
    handle = serve.get_deployment_handle("CustomVoice", graph.app_name)
    return handle.stream_stats.remote().result(timeout_s=30)


@pytest.fixture()
def tenant_key(graph) -> str:
    return create_tenant_key(graph.base_url, graph.admin_token, unique_name("ws"))


# --------------------------------------------------------------------------- WebSocket
def test_tokens_with_delays_get_audio_before_close_in_order_covering_the_text(graph, tenant_key):
    tokens = words(TEXT)
    got = Received()
    close_sent_after_audio = threading.Event()
    with open_socket(graph, tenant_key) as ws:
        ws.send(settings())
        receiver = threading.Thread(target=receive_all, args=(ws, got), daemon=True)
        receiver.start()
        for i, token in enumerate(tokens):
            ws.send(json.dumps({"type": "text", "text": token}))
            time.sleep(0.05)  # an LLM at 20 tokens/s
            if i == len(tokens) - 3:  # hold the last words until audio came (or 60 s passed)
                got.first_audio.wait(60)
        if got.first_audio.is_set():
            close_sent_after_audio.set()
        ws.send(json.dumps({"type": "close"}))
        receiver.join(120)
    assert close_sent_after_audio.is_set(), "no audio before the input was closed"
    created = got.events[0]
    assert created["type"] == "session.created" and created["mode"] == "sentence"
    assert got.events[-1]["type"] == "done" and got.close_code == 1000
    spans = [span for span, _ in got.frames]
    assert [s["index"] for s in spans] == list(range(len(spans)))
    sentences = [s["sentence"] for s in spans]
    assert sentences == sorted(sentences) and sentences[-1] >= 3  # four sentences, in order
    distinct = sorted({(s["span"]["start"], s["span"]["end"]) for s in spans})
    assert distinct[0][0] == 0 and distinct[-1][1] == len(TEXT)
    assert all(a[1] == b[0] for a, b in pairwise(distinct))  # contiguous
    assert [TEXT[a:b].strip() for a, b in distinct][0] == "Hello there, this is the first sentence."
    times = [(s["audio_start"], s["audio_end"]) for s in spans]
    assert all(a[1] == pytest.approx(b[0]) for a, b in pairwise(times))
    rate = created["sample_rate"]
    usage = got.events[-1]["usage"]
    assert usage["characters"] == len(TEXT)
    assert usage["audio_seconds"] == pytest.approx(len(got.audio) / 2 / rate, abs=1e-6)
    assert usage["requests"] == len(distinct)
    assert len(got.audio) % 2 == 0 and np.frombuffer(got.audio, "<i2").size > 0
    billed = wait_for(lambda: (u := usage_of(graph.base_url, tenant_key))["requests"] == len(distinct)
                      and u)
    assert billed, usage_of(graph.base_url, tenant_key)
    assert billed["characters"] == len(TEXT)
    assert billed["audio_seconds"] == pytest.approx(usage["audio_seconds"], abs=2e-3)


def ogg_pages(data: bytes) -> list[tuple[int, int]]:
    """(header type, bitstream serial) of every Ogg page, walking the page structure."""
    pages, at = [], 0
    while at < len(data):
        assert data[at:at + 4] == b"OggS", f"not an Ogg page at byte {at}"
        segments = data[at + 26]
        size = 27 + segments + sum(data[at + 27:at + 27 + segments])
        pages.append((data[at + 5], int.from_bytes(data[at + 14:at + 18], "little")))
        at += size
    return pages


def test_flush_speaks_text_without_a_sentence_end_and_opus_is_one_stream(graph):
    import io

    import av

    got = Received()
    with open_socket(graph, graph.api_key) as ws:
        ws.send(settings(response_format="opus", sample_rate=16000))
        ws.send(json.dumps({"type": "text", "text": "no sentence end here"}))
        ws.send(json.dumps({"type": "flush"}))
        receiver = threading.Thread(target=receive_all, args=(ws, got),
                                    kwargs={"close_after_done": False}, daemon=True)
        receiver.start()
        assert got.first_audio.wait(60), "flush did not speak"
        ws.send(json.dumps({"type": "text", "text": " and more after it"}))
        ws.send(json.dumps({"type": "close"}))
        receiver.join(120)
    assert got.events[-1]["type"] == "done" and got.events[-1]["usage"]["requests"] == 2
    assert got.close_code == 1000  # a client that does not close is closed by the server
    pages = ogg_pages(got.audio)  # one logical stream for both requests: one BOS, one serial
    assert [kind & 0x02 for kind, _ in pages].count(0x02) == 1
    assert len({serial for _, serial in pages}) == 1 and pages[-1][0] & 0x04  # ends with EOS
    with av.open(io.BytesIO(got.audio)) as box:
        stream = box.streams.audio[0]
        samples = sum(f.samples for f in box.decode(stream))
        rate = stream.codec_context.sample_rate
    assert rate in (16000, 48000)  # PyAV may decode Opus at its native 48 kHz
    assert samples / rate == pytest.approx(got.events[-1]["usage"]["audio_seconds"], abs=0.03)


def _long_session(graph, key_in_message: bool):
    """A session whose one sentence runs 400 frames (32 s): still generating at first audio."""
    ws = open_socket(graph, None if key_in_message else graph.api_key)
    extra = {"api_key": graph.api_key} if key_in_message else {}
    ws.send(settings(min_frames=400, max_new_tokens=400, **extra))
    ws.send(json.dumps({"type": "text", "text": "One long sentence that goes on. "}))
    return ws


def _assert_generation_stopped(graph, before: dict) -> None:
    stats = wait_for(lambda: (s := model_stats(graph))["active"] == 0 and s, timeout=30)
    assert stats, "generation still running after the session ended"
    assert stats["streams_cancelled"] > before["streams_cancelled"]
    frames = stats["frames_generated"]
    assert frames - before["frames_generated"] < 400  # cut short, not run to its end
    time.sleep(0.5)
    assert model_stats(graph)["frames_generated"] == frames  # nothing in the background


def test_cancel_message_stops_generation_and_reports_what_was_sent(graph):
    before = model_stats(graph)
    got = Received()
    with _long_session(graph, key_in_message=True) as ws:  # the browsers' way of sending a key
        receiver = threading.Thread(target=receive_all, args=(ws, got), daemon=True)
        receiver.start()
        assert got.first_audio.wait(60)
        ws.send(json.dumps({"type": "cancel"}))
        receiver.join(60)
    done = got.events[-1]
    assert done["type"] == "done" and done["cancelled"] is True and got.close_code == 1000
    assert 0 < done["usage"]["audio_seconds"] < 32
    _assert_generation_stopped(graph, before)


def test_closing_the_socket_stops_generation(graph):
    before = model_stats(graph)
    with _long_session(graph, key_in_message=False) as ws:
        while not isinstance(ws.recv(timeout=60), bytes):
            pass  # until the first audio
    _assert_generation_stopped(graph, before)


@pytest.mark.parametrize(("first", "param"), [
    ({"type": "session", "voice": "vivian", "colour": "red"}, "colour"),
    ({"type": "session", "voice": "vivian", "response_format": "wav"}, "response_format"),
    ({"type": "session", "voice": "nobody"}, "voice"),
    ({"type": "session", "voice": "vivian", "mode": "whole"}, "mode"),
    ("not json at all", "type"),
])
def test_a_bad_first_message_or_unknown_voice_is_an_error_event_and_a_clean_close(
        graph, first, param):
    got = Received()
    with open_socket(graph, graph.api_key) as ws:
        ws.send(first if isinstance(first, str) else json.dumps(first))
        receive_all(ws, got, timeout=60)
    assert [e["type"] for e in got.events] == ["error"] and not got.frames
    error = got.events[0]["error"]
    assert error["param"] == param and error["code"] and error["message"]
    assert error["request_id"].startswith("sess_")
    assert got.close_code == 4422
    if param == "mode":
        assert "incremental" in error["message"] and "sentence" in error["message"]
    if param == "voice":
        assert "vivian" in error["message"].lower()  # names the valid voices


def test_a_saved_voice_by_name_speaks_and_an_unknown_voice_id_is_a_404_event(graph, tenant_key):
    save_clone_voice(graph, tenant_key, "session-narrator")
    got = Received()
    with open_socket(graph, tenant_key) as ws:
        ws.send(settings(voice="session-narrator"))
        ws.send(json.dumps({"type": "text", "text": "Spoken in a saved voice."}))
        ws.send(json.dumps({"type": "close"}))
        receive_all(ws, got)
    assert got.events[-1]["type"] == "done" and got.frames
    by_model = wait_for(lambda: usage_of(graph.base_url, tenant_key)["by_model"])
    assert "VoiceClone" in str(by_model)  # the saved voice's clone prompt, billed as such
    missing = Received()
    with open_socket(graph, tenant_key) as ws:
        ws.send(settings(voice="voice_doesnotexist"))
        receive_all(ws, missing, timeout=60)
    assert [e["type"] for e in missing.events] == ["error"] and missing.close_code == 4404
    assert missing.events[0]["error"]["param"] == "voice"


def test_a_missing_or_bad_key_is_refused_before_any_work(graph):
    before = model_stats(graph)
    got = Received()
    with open_socket(graph) as ws:  # no header, no api_key in the first message
        ws.send(settings())
        ws.send(json.dumps({"type": "text", "text": "Speak this. "}))
        receive_all(ws, got, timeout=60)
    assert [e["type"] for e in got.events] == ["error"] and got.close_code == 1008
    assert got.events[0]["error"]["code"] == "missing_api_key"
    with pytest.raises(InvalidStatus) as refused:  # a header key: refused at the handshake
        open_socket(graph, "qtts-not-a-key")
    assert refused.value.response.status_code == 401
    assert model_stats(graph)["streams_started"] == before["streams_started"]


def test_a_tenant_over_its_limit_gets_a_429_event_with_retry_after(graph):
    def attempt() -> Received:  # both sentences in one calendar minute (the limit's window)
        key = create_tenant_key(graph.base_url, graph.admin_token, unique_name("ws-limit"),
                                requests_per_minute=1)
        got = Received()
        with open_socket(graph, key) as ws:
            ws.send(settings())
            ws.send(json.dumps({"type": "text", "text": "First sentence. Second sentence."}))
            ws.send(json.dumps({"type": "close"}))
            receive_all(ws, got)
        return got

    got = in_one_minute(attempt)
    assert got.frames, "the first sentence was admitted"
    error = got.events[-1]
    assert error["type"] == "error" and error["error"]["code"] == "rate_limited", error
    assert error["error"]["retry_after"] >= 1 and got.close_code == 4429


# ------------------------------------------------------------------ incremental mode
#: One utterance for the whole of TEXT: EOS is held back past the text's tokens (about 60 on
#: the tiny tokenizer), so the model reads all of it, waiting between words, and ends only
#: after the close.
ONE_UTTERANCE = {"mode": "incremental", "min_frames": 100, "max_new_tokens": 120}


def _send_slowly(ws, got: Received, text: str, hold_last: int = 3) -> bool:
    """Send `text` word by word at 20 words/s, holding the last words until audio came;
    then close. True when audio arrived before the close."""
    tokens = words(text)
    for i, token in enumerate(tokens):
        ws.send(json.dumps({"type": "text", "text": token}))
        time.sleep(0.05)
        if i == len(tokens) - hold_last:
            got.first_audio.wait(60)
    before_close = got.first_audio.is_set()
    ws.send(json.dumps({"type": "close"}))
    return before_close


def _assert_spans_cover(got: Received, text: str) -> None:
    spans = [span for span, _ in got.frames]
    assert [s["index"] for s in spans] == list(range(len(spans)))  # in order
    ranges = [(s["span"]["start"], s["span"]["end"]) for s in spans]
    assert ranges[0][0] == 0 and ranges[-1][1] == len(text)
    assert all(a[1] == b[0] or a == b for a, b in pairwise(ranges))  # contiguous
    assert all(a <= b for a, b in ranges)


def test_incremental_mode_speaks_before_the_close_from_one_slot_and_bills_what_was_sent(
        graph, tenant_key):
    got = Received()
    before = model_stats(graph)
    with open_socket(graph, tenant_key) as ws:
        ws.send(settings(**ONE_UTTERANCE))
        receiver = threading.Thread(target=receive_all, args=(ws, got), daemon=True)
        receiver.start()
        assert _send_slowly(ws, got, TEXT), "no audio before the input was closed"
        receiver.join(120)
    created, done = got.events[0], got.events[-1]
    assert created["type"] == "session.created" and created["mode"] == "incremental"
    assert done["type"] == "done" and got.close_code == 1000, got.events[-3:]
    _assert_spans_cover(got, TEXT)
    assert {s["sentence"] for s, _ in got.frames} == {0}  # one utterance, one request
    marks = [s["span"]["end"] for s, _ in got.frames]
    assert marks[0] < len(TEXT)  # its first audio came while it had read only part of it
    usage = done["usage"]
    assert usage == {"characters": len(TEXT), "requests": 1,
                     "audio_seconds": pytest.approx(len(got.audio) / 2 / created["sample_rate"],
                                                    abs=1e-6)}
    after = wait_for(lambda: (s := model_stats(graph))["active"] == 0 and s)
    assert after["streams_started"] == before["streams_started"] + 1  # one slot for it all
    billed = wait_for(lambda: (u := usage_of(graph.base_url, tenant_key))["requests"] == 1 and u)
    assert billed, usage_of(graph.base_url, tenant_key)
    assert billed["characters"] == len(TEXT)
    assert billed["audio_seconds"] == pytest.approx(usage["audio_seconds"], abs=2e-3)


def test_incremental_utterances_cut_by_their_cap_go_on_with_the_unread_text(graph, tenant_key):
    """A frame cap far below the text ends each utterance early: the text it had not read
    opens the next one, so every character is spoken and billed exactly once."""
    got = Received()
    with open_socket(graph, tenant_key) as ws:
        ws.send(settings(mode="incremental", min_frames=6, max_new_tokens=10))
        receiver = threading.Thread(target=receive_all, args=(ws, got), daemon=True)
        receiver.start()
        _send_slowly(ws, got, TEXT)
        receiver.join(180)
    done = got.events[-1]
    assert done["type"] == "done", got.events[-3:]
    _assert_spans_cover(got, TEXT)
    utterances = [s["sentence"] for s, _ in got.frames]
    assert utterances == sorted(utterances) and utterances[-1] >= 2
    assert done["usage"]["characters"] == len(TEXT)
    assert done["usage"]["requests"] == utterances[-1] + 1
    billed = wait_for(lambda: (u := usage_of(graph.base_url, tenant_key))["requests"]
                      == done["usage"]["requests"] and u)
    assert billed and billed["characters"] == len(TEXT)


def test_incremental_flush_ends_an_utterance_and_a_saved_voice_speaks_by_id(graph, tenant_key):
    voice_id = save_clone_voice(graph, tenant_key, "incremental-narrator")["id"]
    got = Received()
    with open_socket(graph, tenant_key) as ws:
        ws.send(settings(voice=voice_id, mode="incremental", min_frames=4, max_new_tokens=30,
                         response_format="mp3"))
        ws.send(json.dumps({"type": "text", "text": "First words without an end"}))
        ws.send(json.dumps({"type": "flush"}))
        receiver = threading.Thread(target=receive_all, args=(ws, got), daemon=True)
        receiver.start()
        assert got.first_audio.wait(60), "flush did not speak"
        ws.send(json.dumps({"type": "text", "text": " then more"}))
        ws.send(json.dumps({"type": "close"}))
        receiver.join(120)
    done = got.events[-1]
    assert done["type"] == "done", got.events[-3:]
    assert done["usage"]["characters"] == len("First words without an end then more")
    assert done["usage"]["requests"] >= 2  # the flush ended the first utterance
    assert got.audio[:3] == b"ID3" or got.audio[0] == 0xFF  # one mp3 stream
    by_model = wait_for(lambda: "VoiceClone" in str(usage_of(graph.base_url, tenant_key)["by_model"]))
    assert by_model, usage_of(graph.base_url, tenant_key)


def test_incremental_cancel_while_the_slot_waits_for_text_frees_it(graph):
    before = model_stats(graph)
    got = Received()
    with open_socket(graph, graph.api_key) as ws:
        ws.send(settings(mode="incremental", min_frames=4, max_new_tokens=400))
        ws.send(json.dumps({"type": "text", "text": "A few words and then a long pause"}))
        receiver = threading.Thread(target=receive_all, args=(ws, got), daemon=True)
        receiver.start()
        assert got.first_audio.wait(60)
        assert wait_for(lambda: model_stats(graph)["active"] == before["active"] + 1)
        ws.send(json.dumps({"type": "cancel"}))
        receiver.join(60)
    done = got.events[-1]
    assert done["type"] == "done" and done["cancelled"] is True and got.close_code == 1000
    stats = wait_for(lambda: (s := model_stats(graph))["active"] == before["active"] and s)
    assert stats and stats["streams_cancelled"] > before["streams_cancelled"]


def test_an_idle_incremental_session_ends_and_frees_its_slot(graph, edge_app):
    """The edge app's sessions end after 2 s without a message (session_idle_timeout_s)."""
    handle = serve.get_deployment_handle("CustomVoice", "edge")
    url = edge_app.replace("http://", "ws://") + PATH
    got = Received()
    with connect(url, additional_headers={"Authorization": f"Bearer {graph.api_key}"},
                 open_timeout=60, max_size=None, close_timeout=30) as ws:
        ws.send(settings(mode="incremental", min_frames=4, max_new_tokens=400))
        ws.send(json.dumps({"type": "text", "text": "Words and then the client goes quiet"}))
        receive_all(ws, got, timeout=60)
    error = got.events[-1]
    assert error["type"] == "error" and error["error"]["code"] == "session_idle", got.events
    assert got.close_code == 4408
    assert wait_for(lambda: handle.stream_stats.remote().result(timeout_s=30)["active"] == 0)


# ------------------------------------------------------------------------------ handle
def test_handle_session_in_incremental_mode(graph):
    ingress = serve.get_app_handle(graph.app_name)
    session = SessionSettings(voice="Ryan", seed=5, **ONE_UTTERANCE)

    async def run() -> list:
        feed = TextFeed()
        events = ingress.options(stream=True).speech_session.remote(session, feed)
        try:
            for token in words(TEXT):
                await feed.put(token)
            first = await asyncio.wait_for(events.__anext__(), 60)  # before the close
            await feed.close()
            return [first] + [event async for event in events]
        finally:
            feed.shutdown()

    events = asyncio.run(run())
    assert isinstance(events[0], SessionAudio)
    assert isinstance(events[-1], SessionDone) and events[-1].usage.characters == len(TEXT)
    audio = [e for e in events if isinstance(e, SessionAudio)]
    assert audio[0].span.start == 0 and audio[-1].span.end == len(TEXT)


def test_handle_session_takes_text_as_it_is_produced(graph):
    ingress = serve.get_app_handle(graph.app_name)
    session = SessionSettings(voice="Ryan", seed=5, **SHORT)

    async def run() -> tuple[list, bool]:
        feed = TextFeed()
        events = ingress.options(stream=True).speech_session.remote(session, feed)
        out: list = []
        audio_before_close = False
        try:
            for token in words(TEXT):
                await feed.put(token)
            # the input is still open: the first sentences must be spoken already
            out.append(await asyncio.wait_for(events.__anext__(), 60))
            audio_before_close = isinstance(out[0], SessionAudio)
            await feed.close()
            async for event in events:
                out.append(event)
        finally:
            feed.shutdown()
        return out, audio_before_close

    events, audio_before_close = asyncio.run(run())
    assert audio_before_close
    assert isinstance(events[-1], SessionDone) and not events[-1].cancelled
    audio = [e for e in events if isinstance(e, SessionAudio)]
    assert [e.index for e in audio] == list(range(len(audio)))
    assert audio[-1].span.end == len(TEXT) and audio[0].span.start == 0
    assert events[-1].usage.characters == len(TEXT)
    pcm = b"".join(e.audio for e in audio)
    assert events[-1].usage.audio_seconds == pytest.approx(len(pcm) / 2 / audio[0].sample_rate)
    # pieces known up front (a list) give the same audio for the same seed and split (to one
    # LSB: the engine's chunk sizes follow each listener's margin, and the codec decodes a
    # different split to ~2e-7, which can round one sample differently)
    listed = list(ingress.options(stream=True).speech_session.remote(session, words(TEXT)))
    again = b"".join(e.audio for e in listed if isinstance(e, SessionAudio))
    assert len(again) == len(pcm)
    assert np.abs(np.frombuffer(again, "<i2").astype(np.int32)
                  - np.frombuffer(pcm, "<i2").astype(np.int32)).max() <= 1
    with pytest.raises(ApiError) as err:
        list(ingress.options(stream=True).speech_session.remote(
            SessionSettings(voice="nobody"), ["Hi."]))
    assert err.value.param == "voice"
