"""One Wyoming client's connection: its events in, audio events out.

- `describe` -> `info`: one TTS program, its voices (serve_app.wyoming.wyoming_voices), streaming
  text supported.
- `synthesize` -> `audio-start`, `audio-chunk`s, `audio-stop`: a speech session in sentence mode
  (one streamed request per sentence), its audio sent as the engine makes it.
- `synthesize-start`, `synthesize-chunk`s, `synthesize-stop` -> `audio-start`, `audio-chunk`s
  while the chunks keep coming, `audio-stop`, then `synthesize-stopped`: a speech session in
  incremental mode (one engine slot reads the text as it arrives). The `synthesize` a client
  also sends inside such a stream (for servers without streaming) is ignored, as Piper does.
- `ping` -> `pong`; other event types are ignored (the protocol's rule for unknown events).

Audio is 16-bit mono PCM at `wyoming.sample_rate`; chunk and stop timestamps are milliseconds
of audio from the start. Every request acts as the tenant `wyoming.tenant` (its limits, plan
and usage, endpoint family "speech", as a speech session). A failure is one `error` event (the
text names the field and what is allowed; the code is the HTTP surface's error code), and then
the server closes the connection. Nothing a client sends is logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass

from wyoming.audio import AudioChunk, AudioStart, AudioStop
from wyoming.error import Error
from wyoming.event import Event, async_write_event
from wyoming.info import Describe
from wyoming.ping import Ping, Pong
from wyoming.tts import (
    Synthesize,
    SynthesizeChunk,
    SynthesizeStart,
    SynthesizeStop,
    SynthesizeStopped,
    SynthesizeTextFormat,
    SynthesizeVoice,
)

from serve_app.app.args import CUSTOM_VOICE
from serve_app.edge.api_errors import invalid, to_api_error
from serve_app.edge.request_context import acting_as
from serve_app.platform.keys import Principal
from serve_app.platform.service import Platform
from serve_app.protocol.session_api import Close, SessionAudio, SessionSettings, TextDelta
from serve_app.sessions.incremental_speaker import ReplicaTextRelay
from serve_app.sessions.speech_session import SpeechSession, new_session_id
from serve_app.synthesis.synthesis_service import SynthesisService
from serve_app.synthesis.voice_selector import VoiceSelector
from serve_app.wyoming.wyoming_args import WyomingArgs
from serve_app.wyoming.wyoming_voices import WyomingVoices

logger = logging.getLogger("qtts.wyoming")

#: Key scopes and plan feature: Wyoming speaks through speech sessions.
ENDPOINT = "speech"
FEATURE = "speech_sessions"
#: The longest event header line, and the most data + payload bytes of one event.
MAX_LINE_BYTES = 64 * 1024
MAX_EVENT_BYTES = 1024 * 1024
SAMPLE_WIDTH = 2  # bytes: 16-bit PCM
CHANNELS = 1


@dataclass(frozen=True)
class WyomingServices:
    """What a connection reaches: the ingress replica's parts and the settings."""

    service: SynthesisService
    selector: VoiceSelector
    relay: ReplicaTextRelay
    voices: WyomingVoices
    platform: Platform
    args: WyomingArgs

    async def principal(self) -> Principal:
        """The tenant `wyoming.tenant` (created on first use; its limits re-read as a key's
        are), allowed the speech endpoints only."""
        return await self.platform.named_principal(self.args.tenant, "wyoming.tenant",
                                                   (f"endpoint:{ENDPOINT}",))


async def read_event(reader: asyncio.StreamReader) -> Event | None:
    """The next event (None at the end of the connection): a JSON header line, then its
    `data_length` bytes of JSON data and `payload_length` bytes of payload, each bounded."""
    try:
        line = await reader.readline()
    except ValueError:  # longer than the reader's limit
        raise invalid("event", f"an event header line is longer than {MAX_LINE_BYTES} "
                      "bytes") from None
    if not line:
        return None
    try:
        header = json.loads(line)
    except ValueError:
        raise invalid("event", "not a Wyoming event: expected a JSON object on one line "
                      '({"type": ..., "data": {...}})') from None
    if not isinstance(header, dict) or not isinstance(header.get("type"), str):
        raise invalid("type", "a Wyoming event is a JSON object with a string 'type'")
    data = header.get("data") or {}
    lengths = [header.get("data_length") or 0, header.get("payload_length") or 0]
    if not isinstance(data, dict) or not all(isinstance(n, int) and n >= 0 for n in lengths):
        raise invalid("data", "'data' is an object; 'data_length' and 'payload_length' are "
                      "byte counts")
    if sum(lengths) > MAX_EVENT_BYTES:
        raise invalid("data_length", f"an event carries at most {MAX_EVENT_BYTES} bytes of "
                      "data and payload")
    try:
        if lengths[0]:
            extra = json.loads(await reader.readexactly(lengths[0]))
            if not isinstance(extra, dict):
                raise invalid("data", "an event's data is a JSON object")
            data.update(extra)
        payload = await reader.readexactly(lengths[1]) if lengths[1] else None
    except asyncio.IncompleteReadError:
        return None  # the client went away mid-event
    except ValueError:
        raise invalid("data", "an event's data is not valid JSON") from None
    return Event(type=header["type"], data=data, payload=payload)


def _voice(event: Event) -> SynthesizeVoice | None:
    raw = event.data.get("voice")
    if raw is None:
        return None
    if not isinstance(raw, dict) or not all(
            isinstance(raw.get(k), str | None) for k in ("name", "language", "speaker")):
        raise invalid("voice", f"{event.type}: voice is an object of strings "
                      '{"name": ..., "language": ...} (names from describe)')
    return SynthesizeVoice.from_dict(raw)


def _text(event: Event, *, required: bool) -> str:
    text = event.data.get("text")
    if not isinstance(text, str) or required and not text.strip():
        raise invalid("text", f"{event.type}: text is required, a string with something to "
                      "speak", "missing_value")
    return text


def _text_format(event: Event) -> None:
    value = event.data.get("text_format")
    if value is not None and value != SynthesizeTextFormat.TEXT.value:
        raise invalid("text_format", f"{event.type}: text_format {value!r} is not supported; "
                      "allowed: text", "unsupported_value")


async def _pieces(*messages: TextDelta | Close) -> AsyncIterator[TextDelta | Close]:
    for message in messages:
        yield message


class WyomingConnection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 parts: WyomingServices) -> None:
        self._reader = reader
        self._writer = writer
        self._parts = parts
        self._write_lock = asyncio.Lock()  # a streamed synthesis writes beside the reader
        self._stream: _TextStream | None = None
        self._session_id = ""

    async def run(self) -> None:
        """Serve events until the client closes or a failure was sent as an error event."""
        try:
            while (event := await read_event(self._reader)) is not None:
                await self._handle(event)
        except (ConnectionError, asyncio.CancelledError):
            pass
        except Exception as exc:  # noqa: BLE001 - every failure is one error event, then close
            await self.fail(exc)
        finally:
            if self._stream is not None:
                await self._stream.cancel()
            self._writer.close()

    async def fail(self, exc: BaseException) -> None:
        """Send `exc` as the error event and end the connection."""
        error = to_api_error(exc, retry_after_s=self._parts.service.args.ingress.retry_after_s,
                             request_id=self._session_id or "wyoming")
        if error.status >= 500:
            logger.error("wyoming session %s failed: %s %s", self._session_id or "-",
                         error.code, type(exc).__name__)
        with contextlib.suppress(Exception):
            await self.write(Error(text=error.message, code=error.code).event())
        self._writer.close()

    async def write(self, event: Event) -> None:
        async with self._write_lock:
            await async_write_event(event, self._writer)

    # ---------------------------------------------------------------------------- events
    async def _handle(self, event: Event) -> None:
        kind = event.type
        if Describe.is_type(kind):
            info = await self._parts.voices.info(await self._parts.principal())
            await self.write(info.event())
        elif Synthesize.is_type(kind):
            if self._stream is None:  # inside a stream: the copy for servers without streaming
                await self._speak_whole(event)
        elif SynthesizeStart.is_type(kind):
            if self._stream is not None:
                raise invalid("synthesize-start", "a streamed synthesis is open: send "
                              "synthesize-stop before the next synthesize-start")
            _text_format(event)
            principal, session = await self._open(_voice(event), "incremental")
            self._stream = _TextStream(self, session, principal)
        elif SynthesizeChunk.is_type(kind):
            self._open_stream(kind).put(_text(event, required=False))
        elif SynthesizeStop.is_type(kind):
            stream = self._open_stream(kind)
            await stream.finish()
            self._stream = None
            await self.write(SynthesizeStopped().event())
        elif Ping.is_type(kind):
            await self.write(Pong(text=event.data.get("text")).event())

    def _open_stream(self, kind: str) -> _TextStream:
        if self._stream is None:
            raise invalid(kind, f"{kind} without synthesize-start: send synthesize-start first")
        return self._stream

    async def _speak_whole(self, event: Event) -> None:
        text = _text(event, required=True)
        _text_format(event)
        principal, session = await self._open(_voice(event), "sentence")
        with acting_as(principal, ENDPOINT):
            await self.play(session, _pieces(TextDelta(text=text), Close()))

    async def _open(self, voice: SynthesizeVoice | None, mode: str
                    ) -> tuple[Principal, SpeechSession]:
        """A speech session on the voice asked for, opened as the Wyoming tenant (errors
        before any audio)."""
        parts = self._parts
        principal = await parts.principal()
        principal.require(endpoint=ENDPOINT, feature=FEATURE)
        choice = await parts.voices.choose(voice, principal)
        args = parts.args
        settings = SessionSettings(model=CUSTOM_VOICE, voice=choice.voice,
                                   language=choice.language, response_format="pcm",
                                   sample_rate=args.sample_rate, mode=mode,  # type: ignore[arg-type]
                                   min_frames=args.min_frames,
                                   max_new_tokens=args.max_new_tokens)
        self._session_id = new_session_id()
        session = SpeechSession(parts.service, settings, self._session_id, parts.selector,
                                parts.relay)
        with acting_as(principal, ENDPOINT):
            await session.open()
        return principal, session

    async def play(self, session: SpeechSession, messages: AsyncIterator[TextDelta | Close]
                   ) -> None:
        """The session's audio as audio-start, audio-chunks as they come, audio-stop."""
        rate = session.sample_rate
        fmt = {"rate": rate, "width": SAMPLE_WIDTH, "channels": CHANNELS}
        await self.write(AudioStart(**fmt, timestamp=0).event())
        sent = 0  # bytes
        async with contextlib.aclosing(session.run(messages)) as events:
            async for event in events:
                if isinstance(event, SessionAudio) and event.audio:
                    timestamp = sent * 1000 // (rate * SAMPLE_WIDTH)
                    await self.write(AudioChunk(**fmt, audio=event.audio,
                                                timestamp=timestamp).event())
                    sent += len(event.audio)
        await self.write(AudioStop(timestamp=round(sent * 1000 / (rate * SAMPLE_WIDTH))).event())


class _TextStream:
    """One synthesize-start ... synthesize-stop: the session reads the chunks as they arrive
    while a task sends its audio."""

    def __init__(self, connection: WyomingConnection, session: SpeechSession,
                 principal: Principal) -> None:
        self._queue: asyncio.Queue[TextDelta | Close] = asyncio.Queue()
        with acting_as(principal, ENDPOINT):  # the task keeps this caller
            self._task = asyncio.get_running_loop().create_task(
                self._speak(connection, session))

    async def _speak(self, connection: WyomingConnection, session: SpeechSession) -> None:
        try:
            await connection.play(session, self._messages())
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - sent as the error event; the reader stops
            await connection.fail(exc)
            raise _Failed from None

    async def _messages(self) -> AsyncIterator[TextDelta | Close]:
        while True:
            message = await self._queue.get()
            yield message
            if isinstance(message, Close):
                return

    def put(self, text: str) -> None:
        if text:
            self._queue.put_nowait(TextDelta(text=text))

    async def finish(self) -> None:
        """No more text: wait until its audio is sent."""
        self._queue.put_nowait(Close())
        try:
            await self._task
        except _Failed:
            raise ConnectionError("sent as an error event") from None

    async def cancel(self) -> None:
        self._task.cancel()
        with contextlib.suppress(BaseException):
            await self._task


class _Failed(Exception):
    """A streamed synthesis failed and its error event was sent."""

