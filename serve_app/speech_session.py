"""A speech session: text arrives in pieces (an LLM's tokens), audio leaves as it is made.

Mode "sentence" (the only one so far): the text is cut at sentence boundaries as it arrives
(the rules of serve_app.platform.jobs.text, applied to a growing buffer) and each sentence is
one streamed request on the session's voice and seed, through `SynthesisService.stream`, so every
sentence is admitted, limited and metered (one usage row each, request id
`<session id>-<n>`) exactly as a streamed HTTP request is. Sentences are spoken in order while
later text keeps arriving; their PCM goes through one `StreamEncoder` for the whole session,
so the output is one continuous pcm / mp3 / Ogg Opus stream (one resampler too).

Mode "incremental" (serve_app.incremental_speech): one engine slot reads the text as it
arrives, through the same metering and the same encoder. Both surfaces use this module: the
WebSocket route (serve_app.routes.speech_session) and the handle method
`TTSIngress.speech_session`.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable
from typing import TYPE_CHECKING

import numpy as np

from deployments.audio import RenderOptions, StreamEncoder
from serve_app import catalog
from serve_app.args import CUSTOM_VOICE, VOICE_CLONE, VOICE_DESIGN
from serve_app.errors import ApiError, invalid, to_api_error
from serve_app.incremental_speech import PLACEHOLDER_TEXT, IncrementalSpeaker, ReplicaTextRelay
from serve_app.platform.jobs.text import CLAUSE_BREAK, SENTENCE_END
from serve_app.protocol.native import CustomVoiceInput, SavedVoiceInput, VoiceDesignInput
from serve_app.protocol.speech_session import (
    Close,
    Flush,
    SessionAudio,
    SessionDone,
    SessionSettings,
    SessionUsage,
    TextDelta,
    TextSpan,
)
from serve_app.routes.openai import resolve_model

if TYPE_CHECKING:
    from serve_app.saved_voices import SavedVoices
    from serve_app.synthesis_service import SynthesisService

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


SpeechInput = CustomVoiceInput | VoiceDesignInput | SavedVoiceInput
#: What a session yields: audio in order, then one SessionDone.
SessionEvent = SessionAudio | SessionDone


class SpeechSession:
    """One session of one caller. `await open()` checks the settings and resolves the voice
    (ApiError before any text is read); then iterate `run(messages)` once."""

    def __init__(self, svc: SynthesisService, settings: SessionSettings, session_id: str,
                 voices: SavedVoices | None = None, relay: ReplicaTextRelay | None = None) -> None:
        self._svc = svc
        self._voices = voices
        self._relay = relay
        self._incremental: IncrementalSpeaker | None = None
        self.voice_id: str | None = None  # the saved voice, for usage
        self.pcm_output = RenderOptions(format="pcm")  # what each request returns
        self.settings = settings
        self.session_id = session_id
        self._splitter = SentenceSplitter(min(MAX_SENTENCE_CHARS, svc.args.ingress.max_text_chars))
        self._make: Callable[[str], SpeechInput] | None = None
        self._encoder: StreamEncoder | None = None
        self.sample_rate = 0  # of the output, known after open()
        self.characters = 0
        self.requests = 0
        self._index = 0
        self._audio_end = 0.0  # seconds of audio sent so far

    # ------------------------------------------------------------------------- setup
    async def open(self) -> None:
        s = self.settings
        if s.mode == "incremental" and self._relay is None:
            raise ApiError(422, "unsupported_value", "mode 'incremental' is not available on "
                           "this surface; use mode 'sentence'", "mode")
        svc = self._svc
        model = resolve_model(s.model, svc.deployed_models)
        svc.instruction("instructions", s.instructions)
        seed = s.seed if s.seed is not None else secrets.randbelow(2**32)
        common = {"language": s.language, "seed": seed, "output": self.pcm_output,
                  "max_new_tokens": s.max_new_tokens, "min_frames": s.min_frames}
        saved = (None if model == VOICE_DESIGN or self._voices is None
                 else await self._voices.lookup(s.voice))
        if saved is not None:  # a saved voice: VoiceClone from its stored prompt
            deployment = VOICE_CLONE
            self._make = lambda text: SavedVoiceInput(text=text, voice=saved, **common)
            self.voice_id = saved.id
        elif model == VOICE_CLONE:
            raise invalid("model", "VoiceClone needs a saved voice: create one with POST "
                          "/v1/voices and pass its id or name as voice", "unsupported_value")
        elif model == VOICE_DESIGN:
            if not (s.instructions or "").strip():
                raise invalid("instructions", "VoiceDesign needs instructions: the voice "
                              "description")
            deployment = VOICE_DESIGN
            self._make = lambda text: VoiceDesignInput(text=text, description=s.instructions,
                                                       **common)
        else:
            deployment = CUSTOM_VOICE
            info = await svc.model_info(CUSTOM_VOICE)
            speaker = catalog.resolve_speaker(s.voice, info, param="voice", openai_names=True)
            self._make = lambda text: CustomVoiceInput(text=text, speaker=speaker,
                                                       instruct=s.instructions, **common)
        info = await svc.model_info(deployment)
        catalog.resolve_language(s.language, info)  # an unknown language fails now, not later
        self._encoder = StreamEncoder(s.response_format, info.sample_rate,
                                      sample_rate=s.sample_rate)
        self.sample_rate = self._encoder.sample_rate
        if s.mode == "incremental":
            call = await svc.prepare(self._make(PLACEHOLDER_TEXT))  # the operation's one builder
            self._incremental = IncrementalSpeaker(
                self, await self._relay.get(), call.deployment, call.request,
                svc.args.ingress.max_text_chars)

    @property
    def service(self) -> SynthesisService:
        return self._svc

    def encode(self, samples: np.ndarray) -> bytes:
        """The session's output bytes for the next PCM samples (one encoder per session)."""
        assert self._encoder is not None
        return self._encoder.write(samples)

    @property
    def usage(self) -> SessionUsage:
        seconds = self._encoder.num_samples / self.sample_rate if self._encoder else 0.0
        return SessionUsage(characters=self.characters, audio_seconds=round(seconds, 6),
                            requests=self.requests)

    @property
    def text(self) -> str:
        """All text received so far."""
        return self._incremental.text if self._incremental is not None else self._splitter.text

    # ----------------------------------------------------------------------- running
    async def run(
        self, messages: AsyncIterable[TextDelta | Flush | Close]
    ) -> AsyncIterator[SessionAudio | SessionDone]:
        """Audio of each sentence in order while `messages` keeps arriving, then one
        SessionDone once Close (or the end of `messages`) has been spoken. Closing this
        generator early (the caller cancelled) cancels the sentence in flight."""
        if self._make is None or self._encoder is None:
            raise RuntimeError("SpeechSession.open() first")
        finished = False
        last: SessionAudio | None = None
        try:
            if self._incremental is not None:
                audio = self._incremental.run(messages)
            else:
                audio = self._sentences(messages)
            async with contextlib.aclosing(audio) as pieces:
                async for last in pieces:
                    yield last
            tail = self._encoder.close()
            finished = True
            if tail and last is not None:
                yield self.audio_event(tail, last.span, last.sentence)  # the encoder's tail
            yield SessionDone(usage=self.usage)
        finally:
            if not finished:
                self._encoder.abort()

    async def _sentences(self, messages: AsyncIterable[TextDelta | Flush | Close]
                         ) -> AsyncIterator[SessionAudio]:
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

    async def _speak(self, span: TextSpan) -> AsyncIterator[SessionAudio]:
        assert self._make is not None and self._encoder is not None
        text = self._splitter.text[span.start:span.end]
        sentence = self.requests
        self.requests += 1
        request_id = f"{self.session_id}-{sentence}"
        stream = await self._svc.stream(self._make(text), request_id)
        counted = False
        async with contextlib.aclosing(stream.chunks()) as pieces:
            async for piece in pieces:
                samples = np.frombuffer(piece.audio, "<i2").astype(np.float32) / 32768.0
                if samples.size and not counted:  # billed once it has audio (as metering)
                    counted = True
                    self.characters += len(text)
                data = self._encoder.write(samples)
                if data:
                    yield self.audio_event(data, span, sentence)

    def audio_event(self, data: bytes, span: TextSpan, sentence: int) -> SessionAudio:
        assert self._encoder is not None
        end = self._encoder.num_samples / self.sample_rate
        start, self._audio_end = self._audio_end, end
        audio = SessionAudio(audio=data, index=self._index, sentence=sentence, span=span,
                             audio_start=start, audio_end=end,
                             format=self.settings.response_format, sample_rate=self.sample_rate)
        self._index += 1
        return audio


# ------------------------------------------------------------------ the handle's text feed
class TextFeed:
    """Text for `TTSIngress.speech_session` from another Ray process, as it is produced.

    Holds a small Ray queue actor (0 CPUs), so it can be passed through a handle call::

        feed = TextFeed()
        events = ingress.options(stream=True).speech_session.remote(settings, feed)
        await feed.put("Hello"); await feed.put(" world."); await feed.close()
        # or: asyncio.create_task(feed.send_all(llm_tokens()))
        async for event in events: ...   # SessionAudio..., then SessionDone
    """

    def __init__(self) -> None:
        from ray.util.queue import Queue

        self._queue = Queue(actor_options={"num_cpus": 0})

    async def put(self, text: str) -> None:
        await self._queue.put_async(TextDelta(text=text))

    async def flush(self) -> None:
        await self._queue.put_async(Flush())

    async def close(self) -> None:
        await self._queue.put_async(Close())

    async def send_all(self, texts: AsyncIterable[str]) -> None:
        """Feed every piece of `texts`, then close."""
        async for text in texts:
            await self.put(text)
        await self.close()

    async def messages(self) -> AsyncIterator[TextDelta | Flush | Close]:
        while True:
            message = await self._queue.get_async()
            yield message
            if isinstance(message, Close):
                return

    def shutdown(self) -> None:
        self._queue.shutdown()


async def _listed(texts: Iterable[str]) -> AsyncIterator[TextDelta]:
    for text in texts:
        yield TextDelta(text=text)


def session_messages(text: TextFeed | Iterable[str]) -> AsyncIterator[TextDelta | Flush | Close]:
    """The messages of a handle call's `text`: a TextFeed, or pieces known up front."""
    if isinstance(text, TextFeed):
        return text.messages()
    if isinstance(text, str):
        raise invalid("text", "pass the text as a list of pieces or a TextFeed")
    return _listed(list(text))


def new_session_id() -> str:
    return f"sess_{secrets.token_hex(12)}"


async def handle_session(
    svc: SynthesisService, settings: SessionSettings, text: TextFeed | Iterable[str],
    voices: SavedVoices | None = None, relay: ReplicaTextRelay | None = None,
) -> AsyncIterator[SessionAudio | SessionDone]:
    """The handle API's session (TTSIngress.speech_session): the trusted in-cluster tenant,
    errors raised as ApiError (setup errors before the first event)."""
    session = SpeechSession(svc, settings, new_session_id(), voices, relay)
    try:
        if settings.api_key is not None:
            raise invalid("api_key", "handle callers act as the in-cluster tenant; api_key is "
                          "for the WebSocket only", "unsupported_value")
        await session.open()
        async with contextlib.aclosing(session.run(session_messages(text))) as events:
            async for event in events:
                yield event
    except Exception as exc:  # noqa: BLE001 - the same ApiError as the other handle methods
        raise to_api_error(exc, retry_after_s=svc.args.ingress.retry_after_s,
                           request_id=session.session_id) from None
