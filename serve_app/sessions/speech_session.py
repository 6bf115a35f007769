"""A speech session: text arrives in pieces (an LLM's tokens), audio leaves as it is made.

`SpeechSession.open` resolves the session's voice once (the voice selector, as every surface)
and makes the session's one output (serve_app.sessions.session_output: one encoder, the
events, the usage); then one of its two speakers turns the text into requests and writes
their audio there: mode "sentence" (serve_app.sessions.sentence_speaker: one streamed
request per sentence) or "incremental" (serve_app.sessions.incremental_speaker: one engine
slot reads the text as it arrives). Every request is admitted, limited and metered (one
usage row each, `<session id>-<n>`) exactly as a streamed HTTP request is. Both surfaces use
this module: the WebSocket route (serve_app.routes.speech_stream) and the handle method
`TTSIngress.speech_session` (`handle_session`, with a `TextFeed`).
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable
from typing import TYPE_CHECKING

from serve_app.edge.api_errors import ApiError, invalid, to_api_error
from serve_app.protocol.session_api import (
    Close,
    Flush,
    SessionAudio,
    SessionDone,
    SessionSettings,
    SessionUsage,
    SessionWords,
    TextDelta,
)
from serve_app.protocol.speech import SpeechInput
from serve_app.sessions.incremental_speaker import (
    IncrementalSpeaker,
    ReplicaTextRelay,
)
from serve_app.sessions.sentence_speaker import SentenceSpeaker
from serve_app.sessions.session_output import SessionOutput
from serve_app.synthesis.voice_selector import OPENAI_FIELDS, VoiceRequest, VoiceSelector
from serve_app.text.incremental import IncrementalFrontEnd

if TYPE_CHECKING:
    from serve_app.synthesis.synthesis_service import SynthesisService

#: What a session yields: audio in order, then one SessionDone.
SessionEvent = SessionAudio | SessionWords | SessionDone


class SpeechSession:
    """One session of one caller. `await open()` checks the settings and resolves the voice
    (ApiError before any text is read); then iterate `run(messages)` once."""

    def __init__(self, svc: SynthesisService, settings: SessionSettings, session_id: str,
                 selector: VoiceSelector, relay: ReplicaTextRelay | None = None) -> None:
        self._svc = svc
        self._selector = selector
        self._relay = relay
        self.settings = settings
        self.session_id = session_id
        self.output: SessionOutput | None = None
        self._speaker: SentenceSpeaker | IncrementalSpeaker | None = None

    # ------------------------------------------------------------------------- setup
    async def open(self) -> None:
        s = self.settings
        if s.mode == "incremental" and self._relay is None:
            raise ApiError(422, "unsupported_value", "mode 'incremental' is not available on "
                           "this surface; use mode 'sentence'", "mode")
        if s.mode == "incremental" and s.timestamps != "none":
            raise ApiError(422, "unsupported_value", "timestamps 'word' needs mode 'sentence' "
                           "(incremental text is spoken as it arrives); send timestamps "
                           "'none' or mode 'sentence'", "timestamps")
        svc = self._svc
        choice = await self._selector.select(VoiceRequest(
            model=s.model, voice=s.voice, instructions=s.instructions, language=s.language,
            fields=OPENAI_FIELDS))
        seed = s.seed if s.seed is not None else secrets.randbelow(2**32)
        common = {"language": s.language, "seed": seed, "max_new_tokens": s.max_new_tokens,
                  "min_frames": s.min_frames, "normalize": s.normalize,
                  "pronunciation_dictionaries": s.pronunciation_dictionaries,
                  "timestamps": s.timestamps}

        def make(text: str) -> SpeechInput:
            return choice.input(text, **common)

        info = await svc.model_info(choice.deployment)
        self.output = SessionOutput(s.response_format, info.sample_rate, s.sample_rate)
        max_chars = svc.args.ingress.max_text_chars
        if s.mode == "incremental":
            self._speaker = IncrementalSpeaker(svc, self.output, await self._relay.get(), make,
                                               self.session_id, max_chars,
                                               await self._incremental_front_end())
        else:
            self._speaker = SentenceSpeaker(svc, self.output, make, self.session_id, max_chars)

    async def _incremental_front_end(self) -> Callable[[], IncrementalFrontEnd]:
        """Each utterance's front end: the session's normalization and its dictionaries (or
        the tenant's defaults), resolved once for the session."""
        s = self.settings
        lexicon = await self._svc.pronunciations.lexicon(s.pronunciation_dictionaries)
        normalizer = self._svc.text_front_end.normalizer
        normalize = ((lambda text: normalizer.normalize_async(text, s.language))
                     if s.normalize else None)
        return lambda: IncrementalFrontEnd(normalize, lexicon)

    @property
    def service(self) -> SynthesisService:
        return self._svc

    @property
    def sample_rate(self) -> int:
        """Of the output (known after open())."""
        return self.output.sample_rate if self.output is not None else 0

    @property
    def usage(self) -> SessionUsage:
        if self.output is None:
            return SessionUsage(characters=0, audio_seconds=0.0, requests=0)
        return self.output.usage

    @property
    def text(self) -> str:
        """All text received so far."""
        return self._speaker.text if self._speaker is not None else ""

    # ----------------------------------------------------------------------- running
    async def run(
        self, messages: AsyncIterable[TextDelta | Flush | Close]
    ) -> AsyncIterator[SessionEvent]:
        """Audio of each sentence in order while `messages` keeps arriving, then one
        SessionDone once Close (or the end of `messages`) has been spoken. Closing this
        generator early (the caller cancelled) cancels the request in flight."""
        if self._speaker is None or self.output is None:
            raise RuntimeError("SpeechSession.open() first")
        output = self.output
        finished = False
        try:
            async with contextlib.aclosing(self._speaker.run(messages)) as pieces:
                async for audio in pieces:
                    yield audio
            tail = output.close()
            finished = True
            if tail is not None:
                yield tail  # the encoder's tail
            yield SessionDone(usage=output.usage)
        finally:
            if not finished:
                output.abort()


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
    selector: VoiceSelector, relay: ReplicaTextRelay | None = None,
) -> AsyncIterator[SessionEvent]:
    """The handle API's session (TTSIngress.speech_session): the trusted in-cluster tenant,
    errors raised as ApiError (setup errors before the first event)."""
    session = SpeechSession(svc, settings, new_session_id(), selector, relay)
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
