"""A speech session's "sentence" mode: the text is cut at sentence boundaries as it arrives
(the rules of serve_app.platform.jobs.text, applied to a growing buffer) and each sentence is
one streamed request on the session's voice and seed, admitted, limited and metered (one
usage row each, request id `<session id>-<n>`) exactly as a streamed HTTP request is.
Sentences are spoken in order while later text keeps arriving; their audio goes to the
session's one output.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterable, AsyncIterator, Callable
from typing import TYPE_CHECKING

from serve_app.edge.api_errors import invalid
from serve_app.platform.jobs.text import CLAUSE_BREAK, SENTENCE_END
from serve_app.protocol.session_api import (
    Close,
    Flush,
    SessionAudio,
    SessionWords,
    TextDelta,
    TextSpan,
)
from serve_app.sessions.session_output import SessionOutput

if TYPE_CHECKING:
    from serve_app.synthesis.synthesis_service import SpeechInput, SynthesisService

#: A sentence longer than this (characters) is cut at its last clause mark or word boundary
#: before it ends, so a run-on sentence does not hold back audio (and stays a valid request).
MAX_SENTENCE_CHARS = 300
#: Marks after which a boundary is final even at the end of the text so far (a Latin "." at
#: the very end may still become "3.14" or "e.g." with the next token).
_FINAL_MARKS = "。！？；…\n"


class SentenceSplitter:
    """Cut a growing text into sentences. `feed(delta)` / `flush()` return the spans that
    are complete; a span's text is `self.text[start:end]`. Spans are contiguous: the first
    starts at 0 and each starts where the previous ended (whitespace between sentences stays
    with the sentence before it); a whitespace-only rest is never a span of its own."""

    def __init__(self, max_chars: int = MAX_SENTENCE_CHARS) -> None:
        self.text = ""
        self.spoken = 0  # text[:spoken] is in spans already
        self._max_chars = max_chars

    def feed(self, delta: str) -> list[TextSpan]:
        self.text += delta
        spans: list[TextSpan] = []
        while (cut := self._next_cut()) is not None:
            spans.append(TextSpan(start=self.spoken, end=self.spoken + cut))
            self.spoken += cut
        return spans

    def flush(self) -> list[TextSpan]:
        """Everything not yet spoken, if it is more than whitespace."""
        if not self.text[self.spoken:].strip():
            return []
        span = TextSpan(start=self.spoken, end=len(self.text))
        self.spoken = len(self.text)
        return [span]

    def _next_cut(self) -> int | None:
        pending = self.text[self.spoken:]
        for match in SENTENCE_END.finditer(pending):
            end = match.end()
            final = end < len(pending) or pending[end - 1].isspace() or pending[end - 1] in _FINAL_MARKS
            if not final:
                return None
            if pending[:end].strip():
                return end
        if len(pending) <= self._max_chars:
            return None
        head = pending[: self._max_chars]
        clauses = [m.end() for m in CLAUSE_BREAK.finditer(head) if head[: m.end()].strip()]
        if clauses:
            return clauses[-1]
        space = head.rfind(" ")
        return space + 1 if space > self._max_chars // 2 else self._max_chars



class SentenceSpeaker:
    """Speaks one session's text sentence by sentence into its output."""

    def __init__(self, svc: SynthesisService, output: SessionOutput,
                 make: Callable[[str], SpeechInput], session_id: str, max_chars: int) -> None:
        self._svc = svc
        self._output = output
        self._make = make
        self._session_id = session_id
        self._splitter = SentenceSplitter(min(MAX_SENTENCE_CHARS, max_chars))
        self._audio_s = 0.0  # the session's audio before the sentence being spoken

    @property
    def text(self) -> str:
        """All text received so far."""
        return self._splitter.text

    async def run(self, messages: AsyncIterable[TextDelta | Flush | Close]
                  ) -> AsyncIterator[SessionAudio | SessionWords]:
        sentences: asyncio.Queue[TextSpan | BaseException | None] = asyncio.Queue()
        reader = asyncio.get_running_loop().create_task(self._read(messages, sentences))
        try:
            while (item := await sentences.get()) is not None:
                if isinstance(item, BaseException):
                    raise item
                async for audio in self._speak(item):
                    yield audio
        finally:
            reader.cancel()

    async def _read(self, messages: AsyncIterable[TextDelta | Flush | Close],
                    sentences: asyncio.Queue) -> None:
        try:
            async for message in messages:
                if isinstance(message, TextDelta):
                    spans = self._splitter.feed(message.text)
                elif isinstance(message, Flush):
                    spans = self._splitter.flush()
                elif isinstance(message, Close):
                    break
                else:
                    raise invalid("type", f"unexpected message {type(message).__name__}")
                for span in spans:
                    sentences.put_nowait(span)
            for span in self._splitter.flush():
                sentences.put_nowait(span)
            sentences.put_nowait(None)
        except Exception as exc:  # noqa: BLE001 - handed to run(), which raises it
            sentences.put_nowait(exc)

    async def _speak(self, span: TextSpan) -> AsyncIterator[SessionAudio | SessionWords]:
        """The sentence's audio, then (`timestamps: "word"`) its words, placed in the
        session's audio and text."""
        output = self._output
        text = self._splitter.text[span.start:span.end]
        sentence = output.next_request()
        stream = await self._svc.open_pcm(self._make(text), f"{self._session_id}-{sentence}")
        counted = False
        sentence_start = self._audio_s
        async with contextlib.aclosing(stream.chunks()) as chunks:
            async for chunk in chunks:
                if chunk.audio.size and not counted:  # billed once it has audio (as metering)
                    counted = True
                    output.bill(len(text))
                if (event := output.write(chunk.audio, span, sentence)) is not None:
                    yield event
                self._audio_s += chunk.audio.size / stream.sample_rate
                if chunk.final and (timings := await stream.timings()) is not None:
                    yield SessionWords(sentence=sentence, source=timings.source,
                                       words=timings.shifted(sentence_start, span.start))
