"""A speech session's "incremental" mode: the model reads the text as it arrives.

Each utterance is one streamed request (one usage row, request id `<session id>-<n>`) on one
engine slot of the model deployment, in streaming-text mode (`ModelServer.stream_text`): the
session puts every text delta into this ingress replica's `TextRelay` and the model replica
reads it from there (deployments.text_relay), so the slot's text grows while it speaks and
the slot waits, holding its cache, when it has read everything that has arrived. Its first
audio comes once the first few words have settled, not after a sentence end.

An utterance ends when its input does: `close`, or a `flush` (speak what you have now; the
next text starts the next utterance on the same voice and seed). When the model ends one
before its input closed (its EOS, or its frame cap), the text it had not read yet opens the
next utterance, so no text is dropped. Audio events carry the span of text the model had read
while making them (it reads ahead of what it says), contiguous from 0 to the end.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterable, AsyncIterator, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from serve_app.edge.api_errors import invalid
from serve_app.protocol.session_api import Close, Flush, SessionAudio, TextDelta, TextSpan
from serve_app.sessions.session_output import SessionOutput
from serve_app.text.incremental import IncrementalFrontEnd

if TYPE_CHECKING:
    from serve_app.protocol.speech import SpeechInput
    from serve_app.synthesis.synthesis_service import SynthesisService

class ReplicaTextRelay:
    """This ingress replica's TextRelay actor, created on the first incremental session (0
    CPUs) and gone with the replica, which owns it."""

    def __init__(self) -> None:
        self._handle: Any = None

    async def get(self) -> Any:
        if self._handle is None:
            from deployments.text_relay import TextRelay

            handle = TextRelay.remote()
            await handle.sessions.remote()  # started: the first utterance does not wait for it
            self._handle = handle
        return self._handle


@dataclass
class _Utterance:
    index: int
    start: int  # where its text begins in the session's text
    key: str  # its text's key in the relay
    front: IncrementalFrontEnd  # its text as the model reads it (normalized, looked up)
    text: str = ""  # the user's text
    model_text: str = ""  # what the model is given (in the relay)
    closed: bool = False
    dropped: bool = False  # the model ended it: its unread text went on in the next one
    read: int = 0  # the user's characters the model has read
    lead: int = 0  # whitespace before `start` that it bills (not given to the model)

    @property
    def billed(self) -> int:
        return self.lead + self.read if self.read else 0


class IncrementalSpeaker:
    """Runs one session's utterances (see the module docstring) for `SpeechSession.run`."""

    def __init__(self, svc: SynthesisService, output: SessionOutput, relay: Any,
                 make: Callable[[str], SpeechInput], session_id: str, max_chars: int,
                 front_end: Callable[[], IncrementalFrontEnd] = lambda: IncrementalFrontEnd(None)
                 ) -> None:
        self._svc = svc
        self._front_end = front_end
        self._output = output
        self._session_id = session_id
        self._relay = relay
        self._make = make
        self._max_chars = max_chars
        self.text = ""  # everything received
        self._current: _Utterance | None = None
        self._queue: asyncio.Queue[_Utterance | BaseException | None] = asyncio.Queue()
        self._count = 0
        self._spoken_to = 0  # spans end here so far
        self._lead = 0  # whitespace received while no utterance was open

    # ------------------------------------------------------------------ text in
    async def _open_utterance(self, start: int, text: str = "", lead: int = 0) -> _Utterance:
        index = self._count
        self._count += 1
        u = _Utterance(index, start, f"{self._session_id}-{index}", self._front_end(),
                       lead=lead)
        self._current = u
        if text:
            await self._put(u, text)
        return u

    async def _put(self, u: _Utterance, delta: str) -> None:
        u.text += delta
        self._send(u, await u.front.feed(delta))

    def _send(self, u: _Utterance, model_delta: str, end: bool = False) -> None:
        if (model_delta or end) and not u.dropped:
            self._relay.put.remote(u.key, len(u.model_text), model_delta, *((True,) if end
                                                                             else ()))
            u.model_text += model_delta

    async def _end_input(self, u: _Utterance) -> None:
        if self._current is u:
            self._current = None
        if not u.closed:
            u.closed = True
            self._send(u, await u.front.finish(), end=True)

    async def _read(self, messages: AsyncIterable[TextDelta | Flush | Close]) -> None:
        try:
            async for message in messages:
                if isinstance(message, TextDelta):
                    await self._take(message.text)
                elif isinstance(message, Flush):
                    if self._current is not None:
                        await self._end_input(self._current)
                elif isinstance(message, Close):
                    break
                else:
                    raise invalid("type", f"unexpected message {type(message).__name__}")
            if self._current is not None:
                await self._end_input(self._current)
            self._queue.put_nowait(None)
        except Exception as exc:  # noqa: BLE001 - handed to run(), which raises it
            self._queue.put_nowait(exc)

    async def _take(self, delta: str) -> None:
        if len(delta) > self._max_chars:
            raise invalid("text", f"a text delta is {len(delta)} characters long; at most "
                          f"{self._max_chars} are allowed (ingress.max_text_chars)")
        start = len(self.text)
        self.text += delta
        u = self._current
        if u is not None and len(u.text) + len(delta) > self._max_chars:
            await self._end_input(u)  # an utterance is one request: at most max_text_chars
            u = None
        if u is None:
            begins = len(delta) - len(delta.lstrip())  # an utterance starts at a word
            if begins == len(delta):
                self._lead += begins
                return
            u = await self._open_utterance(start + begins, lead=self._lead + begins)
            self._lead = 0
            self._queue.put_nowait(u)
            delta = delta[begins:]
        await self._put(u, delta)

    # ------------------------------------------------------------------ audio out
    async def run(self, messages: AsyncIterable[TextDelta | Flush | Close]) -> AsyncIterator[SessionAudio]:
        reader = asyncio.get_running_loop().create_task(self._read(messages))
        try:
            while (item := await self._queue.get()) is not None:
                if isinstance(item, BaseException):
                    raise item
                u: _Utterance | None = item
                while u is not None:
                    async for audio in self._speak(u):
                        yield audio
                    u = await self._continuation(u)
        finally:
            reader.cancel()
            u = self._current
            if u is not None and not u.closed:  # cancelled: nothing more is read
                u.closed = True
                self._send(u, "", end=True)

    async def _continuation(self, u: _Utterance) -> _Utterance | None:
        """The utterance that goes on with the text `u` did not read, when the model ended `u`
        before its input closed (None when it read all it was given)."""
        if u.closed and u.read >= len(u.text):
            return None
        rest, input_ended = u.text[u.read:], u.closed
        self._relay.drop.remote(u.key)
        u.closed = u.dropped = True
        if self._current is u:
            self._current = None
        if not rest.strip():
            return None
        begins = len(rest) - len(rest.lstrip())
        follow = await self._open_utterance(u.start + u.read + begins, rest[begins:], begins)
        if input_ended:  # no more text will come for it (a flush or the close ended `u`)
            await self._end_input(follow)
        return follow

    async def _speak(self, u: _Utterance) -> AsyncIterator[SessionAudio]:
        from deployments.text_relay import TextSource

        output = self._output
        output.next_request()
        # the text so far is the request's text as any request's is (validated, billed when
        # read); the model reads it, and what follows, from the relay
        stream = await self._svc.open_pcm(self._make(u.text), u.key,
                                          text=TextSource(self._relay, u.key),
                                          characters=lambda: u.billed)
        try:
            async with contextlib.aclosing(stream.chunks()) as chunks:
                async for chunk in chunks:
                    billed = u.billed
                    u.read = max(u.read, min(u.front.source_read(chunk.text_chars),
                                             len(u.text)))
                    output.bill(u.billed - billed)  # billed: what the model read
                    end = max(self._spoken_to, u.start + u.read)
                    event = output.write(chunk.audio, TextSpan(start=self._spoken_to, end=end),
                                         u.index)
                    if event is not None:
                        self._spoken_to = end
                        yield event
        finally:
            self._relay.drop.remote(u.key)
