"""The typed operations behind every surface: build the model call, admit and meter, cache,
synthesize, render; or open the model's stream.

The ingress composes one `SynthesisService` with the replica's admission
(serve_app.synthesis.admission), through which every call is metered
(serve_app.synthesis.metering). Every surface (seed, OpenAI, design and clone, saved voices,
jobs, speech sessions, the handle API) has its voice decided by the voice selector
(serve_app.synthesis.voice_selector), hands the service the typed input that made (the
operation is the input's type) and calls one public method: `synthesize` (the whole audio),
`stream` (encoded as it is made), `open_pcm` (the model's float PCM, for a speech session,
which encodes it once itself) or `segment` (a job's); so a request means the same thing, and
is admitted, metered, measured and rendered the same way, whichever way it arrives. Each
input's model call is built in one place (`prepare`, a `ModelCall`). Without an admission
component (Ray-free route tests) nothing is metered and the cache has one scope.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, TypeVar

import numpy as np
from ray.serve.handle import DeploymentHandle

from deployments.audio import (
    ReferenceAudio,
    RenderedAudio,
    RenderOptions,
    needs_processing,
    render,
)
from deployments.audio.content_credentials import C2PA_FORMATS
from deployments.audio.formats import AudioFormat
from deployments.audio.marking import AIMark, embed_mark
from deployments.engine.types import ModelInfo, SynthesisResult, VoicePrompt
from deployments.metrics import tts_metrics
from serve_app.app.args import CUSTOM_VOICE, VOICE_CLONE, AppArgs
from serve_app.edge.api_errors import ApiError, invalid, overloaded, replica_gone, unavailable
from serve_app.edge.request_context import Caller
from serve_app.protocol.speech import (
    AudioOutput,
    SpeechInput,
    VoiceDesignInput,
)
from serve_app.synthesis import catalog
from serve_app.synthesis.admission import TenantAdmission
from serve_app.synthesis.audio_stream import (
    AudioStream,
    ModelStream,
    check_stream_options,
    open_model_stream,
)
from serve_app.synthesis.availability import DeploymentDown, ModelAvailability
from serve_app.synthesis.cache import LRUCache, cache_key
from serve_app.synthesis.health import GraphHealth, ModelDetails, graph_health
from serve_app.synthesis.lexicons import Pronunciations
from serve_app.synthesis.metering import Meter, Metered, Unmetered
from serve_app.synthesis.model_call import CallBuilder, ModelCall
from serve_app.synthesis.word_timing import WordTimer
from serve_app.text.front_end import TextFrontEnd

if TYPE_CHECKING:
    from deployments.text_relay import TextSource

T = TypeVar("T")
logger = logging.getLogger("qtts.service")


class SynthesisService:
    def __init__(self, args: AppArgs, models: dict[str, DeploymentHandle],
                 audio: DeploymentHandle, admission: TenantAdmission | None = None,
                 aligner: DeploymentHandle | None = None):
        self.args = args
        self._models = models
        self._audio = audio
        self.admission = admission
        self.meter: Meter | Unmetered = (
            Meter(admission, args.platform.concurrency_lease_s / 4) if admission else Unmetered())
        self._info: dict[str, ModelInfo] = {}
        self._cache: LRUCache[tuple[str, AudioOutput]] = LRUCache(
            args.ingress.cache_size if args.ingress.cache_enabled else 0
        )
        self.in_flight = 0
        self.started_at = time.monotonic()
        self.availability = ModelAvailability(models)
        self.text_front_end = TextFrontEnd()
        self._calls = CallBuilder(args, self.model_info, self.text_front_end)
        self.pronunciations = Pronunciations(admission)
        self._details = ModelDetails()  # each model's own status, for health
        #: `timestamps: "word"`: the aligner deployment's times, else estimated
        self.timer = WordTimer(aligner, args.ingress.request_timeout_s)

    # ----------------------------------------------------------------------------- models
    @property
    def deployed_models(self) -> list[str]:
        return list(self._models)

    def handle(self, name: str) -> DeploymentHandle:
        handle = self._models.get(name)
        if handle is None:
            raise ApiError(
                404,
                "model_not_deployed",
                f"{name} is not deployed in this graph. Deployed: {', '.join(self._models) or 'none'}.",
                "model",
            )
        if reason := self.availability.reason_down(name):
            raise unavailable(f"{name} cannot serve right now: {reason}. Retry shortly.",
                              self.args.ingress.retry_after_s, "model")
        return handle

    @contextlib.contextmanager
    def _watching(self, deployment: str):
        """Tell availability at once when a call sees a replica of `deployment` die, or that
        it answered."""
        try:
            yield
        except Exception as exc:
            if replica_gone(exc):
                self.availability.note_replica_lost(deployment)
            raise
        self.availability.note_served(deployment)

    async def _unless_down(self, deployment: str, awaitable: Awaitable[T]) -> T:
        """A model call that answers 503 `model_unavailable` at once when `deployment` goes
        down while it waits (serve_app.synthesis.availability: Serve's router would hold it until a
        replacement runs)."""
        try:
            return await self.availability.call(deployment, awaitable)
        except DeploymentDown as exc:
            raise unavailable(f"{deployment} cannot serve right now: {exc.reason}. Retry "
                              "shortly.", self.args.ingress.retry_after_s, "model") from None

    async def model_info(self, name: str) -> ModelInfo:
        info = self._info.get(name)
        if info is None:
            info = await self.handle(name).info.remote()
            self._info[name] = info
        return info

    # ------------------------------------------------------------------------- operations
    async def synthesize(self, inp: SpeechInput, request_id: str) -> AudioOutput:
        """Any operation, whole (the operation is the input's type: CustomVoice, VoiceDesign,
        VoiceClone or a saved voice): admitted and metered for the current caller, cached per
        tenant, rendered (in the ingress or the AudioProcessor) as `inp.output` asks."""
        self.check_capacity()
        call = await self.prepare(inp)
        async with self.meter.admitted(self._metered(call, request_id)) as usage:
            out = await self._run(call, inp.output, request_id,
                                  timed=inp if inp.timestamps == "word" else None)
            usage.ok(out.duration_seconds)
            return out

    async def segment(self, inp: SpeechInput, caller: Caller, usage_id: str,
                      failed_usage_id: str) -> SynthesisResult:
        """One segment of a job as a request of `caller` (the job's tenant): the same
        request building, admission, timeout, availability and metrics as a direct request;
        the model's samples come back unrendered (the job joins its segments, then renders
        once with `render`). Metered under `usage_id` when it succeeds, `failed_usage_id`
        when it fails (so a retry can still bill `usage_id`)."""
        call = await self.prepare(inp, caller=caller)
        metered = Metered(call.deployment, usage_id, call.characters, call.voice,
                          caller=caller, failure_id=failed_usage_id)
        async with self.meter.admitted(metered) as usage:
            started = time.perf_counter()
            with self.counted():
                result = await self._model_result(call)
            _observe(call, result, time.perf_counter() - started)
            usage.ok(result.duration_seconds)
            return result

    async def render(self, audio: np.ndarray, sample_rate: int, options: RenderOptions
                     ) -> RenderedAudio:
        """Audio rendered as every result is: packed here when it is WAV/PCM at the model's
        rate, else by the AudioProcessor."""
        if needs_processing(options, sample_rate):
            async with asyncio.timeout(self.args.ingress.request_timeout_s):
                return await self._audio.render.remote(audio, sample_rate, options)
        # WAV/PCM packing at the model's rate: cheaper here than a hop to AudioProcessor.
        return render(audio, sample_rate, options)

    # ------------------------------------------------------------------------- streaming
    async def stream(self, inp: SpeechInput, request_id: str) -> AudioStream:
        """Open a streamed synthesis of any kind, encoded as `inp.output` asks: returns once
        its first audio is there (so request errors raise here), then `AudioStream.chunks()`
        yields encoded pieces as the model makes them. Render options that need the whole
        utterance are refused (400)."""
        check_stream_options(inp.output)
        pcm = await self.open_pcm(inp, request_id)
        stream = AudioStream(pcm, inp.output)
        if self.args.audio.mark_outputs:  # a stream's mark: its headers, sent before any audio
            stream.mark = AIMark(model_kind=pcm.model_kind, request_id=request_id)
        return stream

    async def open_pcm(self, inp: SpeechInput, request_id: str, *,
                       text: TextSource | None = None,
                       characters: Callable[[], int] | None = None) -> ModelStream:
        """Open the model's stream of float PCM for `inp` (its `output` is not used: the
        consumer encodes). `text`: the text keeps arriving there (an incremental session;
        `inp.text` is what has arrived so far), and `characters` is read when the stream ends
        to bill it. Streams bypass the result cache, count as in flight until they end and
        are metered until then."""
        self.check_capacity()
        arrived = time.time()  # the engine's first-audio bound counts from here
        call = await self.prepare(inp, text)
        call = dataclasses.replace(call, request=dataclasses.replace(call.request,
                                                                    arrived_at=arrived))
        started = time.perf_counter()
        timeout = self.args.ingress.request_timeout_s
        release = contextlib.AsyncExitStack()
        try:
            usage = await release.enter_async_context(
                self.meter.admitted(self._metered(call, request_id, streamed=True,
                                                  characters=characters)))
            release.enter_context(self.counted())
            with self._watching(call.deployment):
                async with asyncio.timeout(timeout):
                    source = await call.invoke(self.handle(call.deployment), self._audio,
                                               stream=True)
                stream = await self._unless_down(call.deployment, open_model_stream(
                    source, request_id, started, timeout, release, usage))
        except BaseException as exc:
            await release.__aexit__(type(exc), exc, exc.__traceback__)
            raise
        stream.model_kind = call.deployment
        if inp.timestamps == "word" and text is None:
            stream.timing = functools.partial(self.timer.timings, call, inp.text,
                                              ssml=inp.input_format == "ssml")
        kind = call.info.kind.value
        tts_metrics().observe_first_audio(kind, stream.first_audio_seconds)
        count = characters or (lambda: call.characters)
        release.callback(lambda: _observe_stream(kind, stream, count(), started))
        return stream

    # ------------------------------------------------------------------ request building
    async def prepare(self, inp: SpeechInput, text: TextSource | None = None, *,
                      caller: Caller | None = None) -> ModelCall:
        """The model call of an operation's input (serve_app.synthesis.model_call), with
        the pronunciation dictionaries it names, or its tenant's defaults (`caller`: whose;
        default: the current request's); text still arriving (`text`) applies none."""
        lexicon = (await self.pronunciations.lexicon(inp.pronunciation_dictionaries, caller)
                   if text is None else None)
        return await self._calls.prepare(inp, text, lexicon)

    def _metered(self, call: ModelCall, request_id: str, *, streamed: bool = False,
                 characters: Callable[[], int] | None = None) -> Metered:
        """A direct request's metering: its text, or `characters` read when a stream ends."""
        return Metered(call.deployment, request_id,
                       call.characters if characters is None else characters, call.voice,
                       streamed=streamed)

    # ------------------------------------------------------------------ voice creation
    async def prepare_reference(self, reference_audio: bytes, *, screen: bool = True
                                ) -> ReferenceAudio:
        """An upload decoded, checked and prepared by the AudioProcessor; `screen`: it must
        hold `clone.min_speech_s` of speech and is trimmed to it (False only for audio the
        service made itself: a designed voice's sample)."""
        self._calls.check_upload(len(reference_audio))
        return await self._audio.prepare_reference.remote(reference_audio, screen=screen)

    async def read_mark(self, data: bytes) -> dict:
        """An uploaded file's format, AI-generated mark and C2PA manifest (the AudioProcessor
        parses and validates them)."""
        return await self._audio.read_mark.remote(data)

    async def analyze_audio(self, data: bytes) -> dict:
        """An upload's duration and speech seconds (the AudioProcessor's speech detector, the
        one that screens clone references)."""
        return await self._audio.analyze.remote(data)

    async def compare_speakers(self, reference: ReferenceAudio, consent_audio: bytes) -> float:
        """The speaker similarity of a prepared reference and a consent recording (the
        AudioProcessor's speaker encoder, on CPU)."""
        self._calls.check_upload(len(consent_audio), "consent_audio")
        return await self._audio.compare_speakers.remote(reference, consent_audio)

    async def clone_prompt(self, reference: bytes | ReferenceAudio, ref_text: str | None,
                           x_vector_only: bool, *, screen: bool = True) -> VoicePrompt:
        """A clone prompt (VoiceClone) from an upload or a prepared reference, to save."""
        if isinstance(reference, bytes):
            reference = await self.prepare_reference(reference, screen=screen)
        return await self.handle(VOICE_CLONE).voice_prompt.remote(reference, ref_text,
                                                                  x_vector_only)

    async def design_sample(self, description: str, text: str, language: str,
                            seed: int | None) -> tuple[bytes, float]:
        """A WAV sample of a designed voice, long enough to clone from (a few seeds are
        tried: a sample shorter than the reference minimum cannot be cloned)."""
        minimum = self.args.audio.min_reference_seconds
        base = 0 if seed is None else seed
        for attempt in range(4):
            call = await self.prepare(VoiceDesignInput(
                text=text, description=description, language=language, seed=base + attempt))
            with self.counted():
                result = await self._model_result(call)
            if result.duration_seconds >= minimum:
                wav = render(result.audio, result.sample_rate, RenderOptions(format="wav"))
                return wav.data, result.duration_seconds
        raise invalid("sample_text", "the designed sample came out shorter than "
                      f"{minimum} s; use a longer sample_text")

    # ---------------------------------------------------------------------------- helpers
    def cached(self, key: str, scope: str) -> AudioOutput | None:
        """A cached result by its key (the seed's `audio_url`), only for the scope (tenant)
        that made it: another tenant's key is a miss, exactly as an unknown one."""
        entry = self._cache.get(key)
        return entry[1] if entry is not None and entry[0] == scope else None

    async def cache_scope(self) -> str:
        """Whose results these are: the cache never serves one caller another's audio (and a
        hit would tell them what the other synthesized). One scope without tenants."""
        return await self.admission.cache_scope() if self.admission else ""

    def check_capacity(self) -> None:
        """503 + Retry-After when MAX_CONCURRENT requests are in flight: asked first, before
        a request is authenticated, read or metered (a refusal costs nothing), and again
        when it is counted in flight."""
        if self.in_flight >= self.args.ingress.max_concurrent:
            raise overloaded(
                f"{self.in_flight} requests are in flight (MAX_CONCURRENT); retry later.",
                self.args.ingress.retry_after_s,
            )

    @contextlib.contextmanager
    def counted(self):
        """Count a request in flight, or refuse it with 503 + Retry-After when full."""
        self.check_capacity()
        self.in_flight += 1
        tts_metrics().set_queue_length("ingress", self.in_flight)
        try:
            yield
        finally:
            self.in_flight -= 1
            tts_metrics().set_queue_length("ingress", self.in_flight)

    async def _model_result(self, call: ModelCall) -> SynthesisResult:
        """The model's answer to `call` within the request timeout."""
        async def invoke() -> SynthesisResult:
            return await (await call.invoke(self.handle(call.deployment), self._audio,
                                            stream=False))

        with self._watching(call.deployment):
            async with asyncio.timeout(self.args.ingress.request_timeout_s):
                return await self._unless_down(call.deployment, invoke())

    async def _run(self, call: ModelCall, output: RenderOptions, request_id: str,
                   timed: SpeechInput | None = None) -> AudioOutput:
        """`timed`: the input, when its words' timestamps are asked for."""
        started = time.perf_counter()
        scope = await self.cache_scope()
        request = call.request
        key = cache_key(
            scope=scope,
            deployment=call.deployment,
            model=call.info.model,
            text=request.text,
            language=request.language,
            speaker=request.speaker,
            instruct=request.instruct,
            seed=request.seed,
            max_new_tokens=request.max_new_tokens,
            min_frames=request.min_frames,
            output=output.model_dump(mode="json"),
            extra={**call.cache_extra, "timestamps": True} if timed is not None
            else call.cache_extra,
        )
        if hit := self.cached(key, scope):
            tts_metrics().count_cached(call.info.kind.value)
            return hit.model_copy(update={"request_id": request_id, "cached": True})
        with self.counted():
            result = await self._model_result(call)
            rendered = await self.render(result.audio, result.sample_rate, output)
            timings = None
            if timed is not None:
                timings = await self.timer.timings(
                    call, timed.text, result.audio, result.sample_rate,
                    rendered.duration_seconds, ssml=timed.input_format == "ssml")
        _observe(call, result, time.perf_counter() - started)
        out = AudioOutput(
            audio=rendered.data,
            format=rendered.format,
            content_type=rendered.content_type,
            sample_rate=rendered.sample_rate,
            duration_seconds=rendered.duration_seconds,
            processing_seconds=time.perf_counter() - started,
            request_id=request_id,
            cache_key=key if self._cache.max_entries > 0 else None,
            model_kind=call.deployment,
            timings=timings,
        )
        out = await self._marked(out)  # a cache hit is the same file: marked by the request that made it
        self._cache.put(key, (scope, out))
        return out

    async def _marked(self, out: AudioOutput) -> AudioOutput:
        """`out` with the AI-generated mark of its request in its metadata (well under a
        millisecond: tags are written around the encoded frames, never re-encoding them) and,
        where a certificate is configured, a signed C2PA manifest."""
        if not self.args.audio.mark_outputs or out.model_kind is None:
            return out
        mark = AIMark(model_kind=out.model_kind, request_id=out.request_id)
        return out.model_copy(update={"audio": await self.mark(out.audio, out.format, mark),
                                      "marked_as": out.request_id})

    async def mark(self, data: bytes, fmt: AudioFormat | str, mark: AIMark) -> bytes:
        """A finished file marked as AI-generated: the mark in its metadata (here), then, for
        the formats a C2PA manifest embeds into and when the deployment has a certificate,
        the manifest signed by the AudioProcessor (the mark is inside what it signs)."""
        data = embed_mark(data, fmt, mark)
        if self.args.audio.signs_outputs() and AudioFormat(fmt) in C2PA_FORMATS:
            async with asyncio.timeout(self.args.ingress.request_timeout_s):
                data = await self._audio.sign.remote(data, AudioFormat(fmt).value,
                                                     mark.model_kind, mark.request_id)
        return data

    # ------------------------------------------------------------------------ read models
    async def graph_health(self) -> GraphHealth:
        """Every deployment's state (serve_app.synthesis.health): the controller's view and each
        running model's own, never waiting behind synthesis."""
        return await graph_health(self._models, self._details)

    async def health(self, detailed: bool = True) -> dict:
        """The seed's health fields plus each deployment's state: with `detailed`, replicas
        and the model's own status (path, load time, slots: for operators, not the public)."""
        report = await self.graph_health()
        deployments = report.deployments if detailed else {
            name: {"status": entry["status"]} for name, entry in report.deployments.items()}
        return {
            "status": "healthy" if report.ready else "degraded",
            "model_loaded": report.models_loaded,
            "device": report.device,
            "concurrent_tasks": self.in_flight,
            "uptime_seconds": round(time.monotonic() - self.started_at, 3),
            "deployments": deployments,
        }

    async def voices(self) -> list[catalog.VoiceEntry]:
        if CUSTOM_VOICE not in self._models:
            return []
        return catalog.voice_entries(await self.model_info(CUSTOM_VOICE))


def _observe_stream(kind: str, stream: ModelStream, characters: int, started: float) -> None:
    """Record a stream when it ends; one cut short counts only its first audio."""
    if not stream.completed:
        return
    total = time.perf_counter() - started
    logger.info("streamed model_kind=%s chars=%d audio_s=%.2f first_audio_s=%.3f total_s=%.2f",
                kind, characters, stream.audio_seconds, stream.first_audio_seconds, total)
    tts_metrics().observe_synthesis(
        kind, total_seconds=total, generation_seconds=total, audio_seconds=stream.audio_seconds,
        characters=characters,
    )


def _observe(call: ModelCall, result: SynthesisResult, total: float) -> None:
    """Record a finished synthesis (non-streaming: its first audio is its whole audio)."""
    info = call.info
    # Sizes and timings only: the text and the audio are never logged.
    logger.info("synthesized model_kind=%s chars=%d audio_s=%.2f generation_s=%.2f total_s=%.2f",
                info.kind.value, call.characters, result.duration_seconds,
                result.generation_seconds, total)
    metrics = tts_metrics()
    metrics.observe_first_audio(info.kind.value, total)
    metrics.observe_synthesis(
        info.kind.value,
        total_seconds=total,
        generation_seconds=result.generation_seconds,
        audio_seconds=result.duration_seconds,
        characters=call.characters,
    )
