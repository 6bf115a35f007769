"""Home Assistant's Wyoming protocol through the graph (serve_app.wyoming), spoken to with the
`wyoming` package's own client classes, as Home Assistant's integration does.

A small app on the shared Ray (CustomVoice, VoiceClone, AudioProcessor, one ingress
replica) listens for Wyoming on a free port, trusts only 127.0.0.1 and acts as a tenant of
its own, which has a saved voice. Lengths are forced (`wyoming.min_frames` 4,
`max_new_tokens` 8): the random checkpoints stop at random otherwise.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
from wyoming.audio import AudioChunk, AudioStart, AudioStop
from wyoming.client import AsyncTcpClient
from wyoming.error import Error
from wyoming.event import Event
from wyoming.info import Describe, Info
from wyoming.tts import (
    Synthesize,
    SynthesizeChunk,
    SynthesizeStart,
    SynthesizeStop,
    SynthesizeStopped,
    SynthesizeVoice,
)

from serve_app.wyoming.wyoming_args import WyomingArgs
from tests.graph.conftest import CPU_PROFILE, free_port, small_app
from tests.graph.tenants import create_tenant_key, save_clone_voice, unique_name, usage_of
from tests.waiting import wait_for

RATE = 22050
MIN_FRAMES = 4  # each request: 4..8 codec frames of 80 ms
FRAME_S = 0.08
TEXT = "Turn on the kitchen lights."
TRUSTED = "127.0.0.1"
UNTRUSTED = "127.0.0.2"  # loopback too, but outside the app's trusted network
TIMEOUT = 120


@dataclass(frozen=True)
class WyomingApp:
    port: int
    tenant: str
    key: str  # an API key of the tenant, to read its usage over HTTP
    saved_voice: str
    base_url: str
    per_peer: int


@pytest.fixture(scope="module")
def wyoming_app(graph) -> Iterator[WyomingApp]:
    from serve_app.tools.profiles import load_profile

    defaults = load_profile(CPU_PROFILE).args
    tenant = unique_name("home-assistant")
    key = create_tenant_key(graph.base_url, graph.admin_token, tenant)
    saved = save_clone_voice(graph, key, unique_name("kitchen"))
    port = free_port()
    args = WyomingArgs(enabled=True, host=TRUSTED, port=port, tenant=tenant, sample_rate=RATE,
                       min_frames=MIN_FRAMES, max_new_tokens=8, max_connections_per_peer=3)
    with small_app(graph, "wyoming", voice_clone=defaults.voice_clone, wyoming=args,
                   platform=defaults.platform.model_copy(
                       update={"trusted_networks": [f"{TRUSTED}/32"]})) as base_url:
        yield WyomingApp(port, tenant, key, saved["name"], base_url,
                         args.max_connections_per_peer)


class ClientFrom(AsyncTcpClient):
    """The package's TCP client, connecting from a chosen local address."""

    def __init__(self, host: str, port: int, local: str) -> None:
        super().__init__(host, port, read_timeout=TIMEOUT)
        self._local = local

    async def connect(self) -> None:
        self._reader, self._writer = await asyncio.open_connection(
            self.host, self.port, local_addr=(self._local, 0))


def client(app: WyomingApp, local: str = TRUSTED) -> ClientFrom:
    return ClientFrom(TRUSTED, app.port, local)


@dataclass
class Heard:
    """The events of one synthesis, with when the first audio chunk came."""

    events: list[Event] = field(default_factory=list)
    first_audio_s: float | None = None

    @property
    def chunks(self) -> list[AudioChunk]:
        return [AudioChunk.from_event(e) for e in self.events if AudioChunk.is_type(e.type)]

    @property
    def audio(self) -> bytes:
        return b"".join(c.audio for c in self.chunks)

    def one(self, kind):
        found = [kind.from_event(e) for e in self.events if kind.is_type(e.type)]
        assert len(found) == 1, [e.type for e in self.events]
        return found[0]


async def listen(conn: AsyncTcpClient, heard: Heard, started: float, until,
                 first_audio: asyncio.Event | None = None) -> Heard:
    """Read events into `heard` until one is of type `until` (or an error, or the end)."""
    while True:
        event = await conn.read_event()
        if event is None:
            return heard
        heard.events.append(event)
        if AudioChunk.is_type(event.type) and heard.first_audio_s is None:
            heard.first_audio_s = time.perf_counter() - started
            if first_audio is not None:
                first_audio.set()
        if until.is_type(event.type) or Error.is_type(event.type):
            return heard


async def synthesize(app: WyomingApp, text: str, voice: SynthesizeVoice | None = None) -> Heard:
    async with client(app) as conn:
        started = time.perf_counter()
        await conn.write_event(Synthesize(text=text, voice=voice).event())
        return await listen(conn, Heard(), started, AudioStop)


def check_pcm(heard: Heard) -> float:
    """audio-start, chunks, audio-stop of 16-bit mono PCM at RATE whose bytes add up to what
    audio-stop's timestamp says; the seconds of audio."""
    start, stop = heard.one(AudioStart), heard.one(AudioStop)
    assert (start.rate, start.width, start.channels) == (RATE, 2, 1)
    chunks = heard.chunks
    assert chunks and all((c.rate, c.width, c.channels) == (RATE, 2, 1) for c in chunks)
    types = [e.type for e in heard.events]
    assert types.index("audio-start") < types.index("audio-chunk")
    assert max(i for i, t in enumerate(types) if t == "audio-chunk") < types.index("audio-stop")
    audio = heard.audio
    assert len(audio) % 2 == 0
    seconds = len(audio) / 2 / RATE
    assert stop.timestamp == pytest.approx(seconds * 1000, abs=1)
    # each chunk's timestamp is where it starts in the audio
    offsets = [0]
    for c in chunks[:-1]:
        offsets.append(offsets[-1] + len(c.audio))
    assert [c.timestamp for c in chunks] == [o * 1000 // (RATE * 2) for o in offsets]
    return seconds


# ------------------------------------------------------------------------------- tests
def test_describe_lists_presets_with_languages_and_the_tenants_saved_voices(graph, wyoming_app):
    async def describe() -> Info:
        async with client(wyoming_app) as conn:
            await conn.write_event(Describe().event())
            event = await conn.read_event()
            assert event is not None and Info.is_type(event.type), event
            return Info.from_event(event)

    info = asyncio.run(describe())
    (program,) = info.tts
    assert program.supports_synthesize_streaming and program.installed
    voices = {v.name: v for v in program.voices}
    with graph.client() as http:
        presets = http.get("/api/voices").json()
    presets = presets["voices"] if isinstance(presets, dict) else presets
    assert presets
    for preset in presets:
        listed = voices[preset["name"]]
        assert listed.languages[0] == preset["language"] or preset["language"] == "auto"
        assert {"en", "zh"} <= set(listed.languages)
    assert wyoming_app.saved_voice in voices
    assert voices[wyoming_app.saved_voice].description.startswith("saved voice")


def usage(app: WyomingApp) -> dict:
    """The acting tenant's usage today."""
    return usage_of(app.base_url, app.key)

def test_synthesize_streams_pcm_at_the_asked_rate_adding_up_to_audio_stop(wyoming_app):
    heard = asyncio.run(synthesize(wyoming_app, TEXT, SynthesizeVoice(name="Vivian")))
    seconds = check_pcm(heard)
    assert seconds >= MIN_FRAMES * FRAME_S * 0.95  # at least the forced frames, resampled
    print(f"\nWyoming time to first audio chunk (synthesize): {heard.first_audio_s * 1000:.0f} ms")


def test_a_saved_voice_of_the_tenant_speaks_by_its_name(wyoming_app):
    heard = asyncio.run(synthesize(wyoming_app, TEXT,
                                   SynthesizeVoice(name=wyoming_app.saved_voice)))
    assert check_pcm(heard) > 0


@pytest.mark.parametrize("saved", [False, True], ids=["preset", "saved-voice"])
def test_streamed_text_in_small_chunks_gets_audio_before_synthesize_stop(wyoming_app, saved):
    voice = SynthesizeVoice(name=wyoming_app.saved_voice if saved else "Vivian")
    words = ("Good evening. The front door is locked, the garage is closed, and all the "
             "lights downstairs are off now.").split(" ")

    async def stream() -> tuple[Heard, bool]:
        async with client(wyoming_app) as conn:
            started = time.perf_counter()
            first_audio = asyncio.Event()
            heard = Heard()
            reader = asyncio.create_task(listen(conn, heard, started, SynthesizeStopped,
                                                first_audio))
            await conn.write_event(SynthesizeStart(voice=voice).event())
            for i, word in enumerate(words):
                await conn.write_event(SynthesizeChunk(text=word + " ").event())
                await asyncio.sleep(0.02)  # an LLM writing
                if i == len(words) - 3:  # hold the last words until audio came
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(first_audio.wait(), TIMEOUT)
            audio_before_stop = first_audio.is_set()
            # the whole text again, as Home Assistant sends it for servers without streaming
            # (the protocol's order): not spoken a second time inside a stream
            await conn.write_event(Synthesize(text=" ".join(words), voice=voice).event())
            await conn.write_event(SynthesizeStop().event())
            await asyncio.wait_for(reader, TIMEOUT)
            return heard, audio_before_stop

    heard, audio_before_stop = asyncio.run(stream())
    assert not [e for e in heard.events if Error.is_type(e.type)], heard.events
    assert audio_before_stop, "no audio before synthesize-stop was sent"
    types = [e.type for e in heard.events]
    assert types[-1] == "synthesize-stopped" and types[-2] == "audio-stop"
    assert check_pcm(heard) > 0  # one audio-start and one audio-stop: spoken once
    print(f"\nWyoming time to first audio chunk (streamed text, {voice.name}): "
          f"{heard.first_audio_s * 1000:.0f} ms")


def test_unknown_voice_is_an_error_event_listing_the_voices(wyoming_app):
    heard = asyncio.run(synthesize(wyoming_app, TEXT, SynthesizeVoice(name="Nobody")))
    error = heard.one(Error)
    assert error.code == "invalid_value"
    assert "voice.name" in error.text and "'Nobody'" in error.text
    assert "Vivian" in error.text and wyoming_app.saved_voice in error.text
    assert not heard.chunks


@pytest.mark.parametrize(("event", "field"), [
    (Event("synthesize", {"text": "   "}), "text"),
    (Event("synthesize", {"text": "Hi.", "text_format": "ssml"}), "text_format"),
    (Event("synthesize", {"text": "Hi.", "voice": "Vivian"}), "voice"),
    (Event("synthesize", {"text": "Hi.", "voice": {"language": "xx"}}), "voice.language"),
    (Event("synthesize-chunk", {"text": "no start"}), "synthesize-start"),
], ids=["blank-text", "ssml", "voice-not-an-object", "unknown-language", "chunk-first"])
def test_bad_input_is_an_error_event_naming_the_field_then_the_end(wyoming_app, event, field):
    async def send() -> tuple[Heard, Event | None]:
        async with client(wyoming_app) as conn:
            await conn.write_event(event)
            heard = await listen(conn, Heard(), time.perf_counter(), AudioStop)
            return heard, await conn.read_event()

    heard, after = asyncio.run(send())
    assert field in heard.one(Error).text
    assert after is None  # the server closed the connection


def test_a_peer_outside_the_trusted_networks_is_closed_before_any_work(wyoming_app):
    before = usage(wyoming_app)

    async def untrusted() -> list[Event]:
        got: list[Event] = []
        with contextlib.suppress(ConnectionError):
            async with client(wyoming_app, local=UNTRUSTED) as conn:
                await conn.write_event(Describe().event())
                await conn.write_event(Synthesize(text="Open the garage door.").event())
                while (event := await conn.read_event()) is not None:
                    got.append(event)
        return got

    assert asyncio.run(untrusted()) == []  # closed without a word: not even an error
    trusted = asyncio.run(synthesize(wyoming_app, TEXT))  # the default voice
    check_pcm(trusted)
    after = wait_for(lambda: (u := usage(wyoming_app))["requests"] > before["requests"] and u,
                     timeout=60)
    assert after, "no usage row for the trusted synthesis"
    # one row, the trusted one's: the untrusted peer's text was never read
    assert after["requests"] == before["requests"] + 1
    assert after["characters"] == before["characters"] + len(TEXT)


def test_usage_rows_are_the_configured_tenants(wyoming_app):
    before = usage(wyoming_app)
    text = "Two sentences here. And the second one."
    heard = asyncio.run(synthesize(wyoming_app, text, SynthesizeVoice(name="Ryan")))
    seconds = check_pcm(heard)
    after = wait_for(lambda: (u := usage(wyoming_app))["requests"] >= before["requests"] + 2
                     and u, timeout=60)
    assert after, usage(wyoming_app)
    assert after["requests"] == before["requests"] + 2  # one row per sentence
    assert after["characters"] == before["characters"] + len(text)
    assert after["audio_seconds"] - before["audio_seconds"] == pytest.approx(seconds, abs=0.01)


def test_connections_beyond_the_per_peer_cap_get_an_error_and_are_closed(wyoming_app):
    async def open_verified(conns: contextlib.AsyncExitStack) -> AsyncTcpClient:
        """A connection the server serves (earlier tests' closed connections may still
        count until the server has read their end: refused ones are retried)."""
        deadline = time.monotonic() + 60
        while True:
            conn = await conns.enter_async_context(client(wyoming_app))
            await conn.write_event(Describe().event())
            event = await conn.read_event()
            if event is not None and Info.is_type(event.type):
                return conn
            assert time.monotonic() < deadline, event
            await asyncio.sleep(0.1)

    async def scenario() -> tuple[Error, Event | None, bool]:
        async with contextlib.AsyncExitStack() as conns:
            held = [await open_verified(conns) for _ in range(wyoming_app.per_peer)]
            extra = await conns.enter_async_context(client(wyoming_app))
            refused = await extra.read_event()
            after = await extra.read_event()
            await held[0].disconnect()
            async with contextlib.AsyncExitStack() as again:
                await open_verified(again)  # a place is free again once one closed
            return Error.from_event(refused), after, True

    error, after, reopened = asyncio.run(scenario())
    assert error.code == "too_many_connections"
    assert "wyoming.max_connections_per_peer" in error.text
    assert after is None and reopened
