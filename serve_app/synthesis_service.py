"""The typed operations behind every surface: validate, admit, cache, synthesize, render.

The ingress owns one `SynthesisService`; the HTTP routes and the handle methods both call it, so a
request means the same thing whichever way it arrives.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from collections.abc import Awaitable, Callable

from ray.serve.handle import DeploymentHandle

from deployments.audio import RenderedAudio, RenderOptions, needs_processing, render
from deployments.engine.types import ModelInfo, SynthesisRequest, SynthesisResult
from deployments.metrics import tts_metrics
from serve_app import catalog
from serve_app.args import CUSTOM_VOICE, VOICE_CLONE, VOICE_DESIGN, AppArgs
from serve_app.audio_stream import AudioStream, check_stream_options, open_stream
from serve_app.availability import ModelAvailability
from serve_app.cache import LRUCache, cache_key
from serve_app.errors import ApiError, invalid, overloaded, replica_gone, unavailable
from serve_app.health import graph_health
from serve_app.protocol.native import (
    AudioOutput,
    CustomVoiceInput,
    VoiceCloneInput,
    VoiceDesignInput,
)

logger = logging.getLogger("qtts.service")


class SynthesisService:
    def __init__(self, args: AppArgs, models: dict[str, DeploymentHandle], audio: DeploymentHandle):
        self.args = args
        self._models = models
        self._audio = audio
        self._info: dict[str, ModelInfo] = {}
        self._cache: LRUCache[tuple[str, AudioOutput]] = LRUCache(
            args.ingress.cache_size if args.ingress.cache_enabled else 0
        )
        self.in_flight = 0
        self.started_at = time.monotonic()
        self.availability = ModelAvailability(models)

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

    async def model_info(self, name: str) -> ModelInfo:
        info = self._info.get(name)
        if info is None:
            info = await self.handle(name).info.remote()
            self._info[name] = info
        return info

    # ------------------------------------------------------------------------- operations
    async def custom_voice(self, inp: CustomVoiceInput, request_id: str) -> AudioOutput:
        info, request = await self._custom_voice_request(inp)
        return await self._run(CUSTOM_VOICE, info, request, inp.output, request_id)

    async def voice_design(self, inp: VoiceDesignInput, request_id: str) -> AudioOutput:
        info, request = await self._voice_design_request(inp)
        return await self._run(VOICE_DESIGN, info, request, inp.output, request_id)

    async def voice_clone(self, inp: VoiceCloneInput, request_id: str) -> AudioOutput:
        info, request, ref_text = await self._voice_clone_request(inp)
        reference_digest = hashlib.sha256(inp.reference_audio).hexdigest()

        async def synthesize() -> SynthesisResult:
            reference = await self._audio.prepare_reference.remote(inp.reference_audio)
            return await self.handle(VOICE_CLONE).synthesize_with_reference.remote(
                request, reference, ref_text, inp.x_vector_only
            )

        extra = {"reference": reference_digest, "ref_text": ref_text, "xvec": inp.x_vector_only}
        return await self._run(VOICE_CLONE, info, request, inp.output, request_id, synthesize, extra)

    # ------------------------------------------------------------------------- streaming
    async def stream(
        self, inp: CustomVoiceInput | VoiceDesignInput | VoiceCloneInput, request_id: str
    ) -> AudioStream:
        """Open a streamed synthesis of any kind: returns once its first audio is there (so
        request errors raise here), then `AudioStream.chunks()` yields encoded pieces as the
        model makes them. Streams bypass the result cache and count as in flight until they
        end. Render options that need the whole utterance are refused (400)."""
        check_stream_options(inp.output)
        if isinstance(inp, CustomVoiceInput):
            _, request = await self._custom_voice_request(inp)
            deployment = CUSTOM_VOICE
        elif isinstance(inp, VoiceDesignInput):
            _, request = await self._voice_design_request(inp)
            deployment = VOICE_DESIGN
        else:
            return await self._stream_clone(inp, request_id)

        async def start():
            return self.handle(deployment).options(stream=True).stream.remote(request)

        return await self._open_stream(start, inp.output, request_id, deployment, request)

    async def _stream_clone(self, inp: VoiceCloneInput, request_id: str) -> AudioStream:
        _, request, ref_text = await self._voice_clone_request(inp)

        async def start():
            reference = await self._audio.prepare_reference.remote(inp.reference_audio)
            return self.handle(VOICE_CLONE).options(stream=True).stream_with_reference.remote(
                request, reference, ref_text, inp.x_vector_only
            )

        return await self._open_stream(start, inp.output, request_id, VOICE_CLONE, request)

    async def _open_stream(
        self, start, output: RenderOptions, request_id: str, deployment: str,
        request: SynthesisRequest,
    ) -> AudioStream:
        started = time.perf_counter()
        timeout = self.args.ingress.request_timeout_s
        release = contextlib.ExitStack()
        release.enter_context(self.admitted())
        try:
            with self._watching(deployment):
                source = await asyncio.wait_for(start(), timeout)
        except BaseException:
            release.close()
            raise
        with self._watching(deployment):
            stream = await open_stream(source, output, request_id, started, timeout, release)
        kind = (await self.model_info(deployment)).kind.value
        tts_metrics().observe_first_audio(kind, stream.first_audio_seconds)
        release.callback(_observe_stream, kind, stream, len(request.text), started)
        return stream

    # ------------------------------------------------------------------ request building
    async def _custom_voice_request(self, inp: CustomVoiceInput) -> tuple[ModelInfo, SynthesisRequest]:
        info = await self.model_info(CUSTOM_VOICE)
        return info, SynthesisRequest(
            text=self._text(inp.text),
            language=catalog.resolve_language(inp.language, info),
            speaker=catalog.resolve_speaker(inp.speaker, info),
            instruct=self.instruction("instruct", inp.instruct) or None,
            seed=inp.seed,
            max_new_tokens=inp.max_new_tokens,
            min_frames=inp.min_frames,
        )

    async def _voice_design_request(self, inp: VoiceDesignInput) -> tuple[ModelInfo, SynthesisRequest]:
        info = await self.model_info(VOICE_DESIGN)
        if not inp.description.strip():
            raise invalid("description", "description must describe the voice to create")
        return info, SynthesisRequest(
            text=self._text(inp.text),
            language=catalog.resolve_language(inp.language, info),
            instruct=self.instruction("description", inp.description),
            seed=inp.seed,
            max_new_tokens=inp.max_new_tokens,
            min_frames=inp.min_frames,
        )

    async def _voice_clone_request(
        self, inp: VoiceCloneInput
    ) -> tuple[ModelInfo, SynthesisRequest, str | None]:
        info = await self.model_info(VOICE_CLONE)
        ref_text = (inp.ref_text or "").strip() or None
        if ref_text is not None:
            self._text(ref_text, "ref_text")
        if not inp.x_vector_only and ref_text is None:
            raise invalid(
                "ref_text",
                "ref_text (the transcript of reference_audio) is required for ICL cloning; "
                "or set x_vector_only=true to clone from the speaker embedding alone",
                "missing_value",
            )
        self._check_upload(len(inp.reference_audio))
        request = SynthesisRequest(
            text=self._text(inp.text),
            language=catalog.resolve_language(inp.language, info),
            seed=inp.seed,
            max_new_tokens=inp.max_new_tokens,
            min_frames=inp.min_frames,
        )
        return info, request, ref_text

    # ---------------------------------------------------------------------------- helpers
    def cached(self, key: str, scope: str) -> AudioOutput | None:
        """A cached result by its key (the seed's `audio_url`), only for the scope (tenant)
        that made it: another tenant's key is a miss, exactly as an unknown one."""
        entry = self._cache.get(key)
        return entry[1] if entry is not None and entry[0] == scope else None

    async def cache_scope(self) -> str:
        """Whose results these are: the cache never serves one caller another's audio (and a
        hit would tell them what the other synthesized). One scope without tenants."""
        return ""

    def _text(self, text: str, param: str = "text") -> str:
        limit = self.args.ingress.max_text_chars
        if len(text) > limit:
            raise invalid(param, f"{param} is {len(text)} characters long; at most {limit} are allowed")
        return text

    def instruction(self, param: str, value: str | None) -> str | None:
        """An instruction or voice description within `ingress.max_instruction_chars` (the
        model reads it in full, in front of every request's text)."""
        limit = self.args.ingress.max_instruction_chars
        if value is not None and len(value) > limit:
            raise invalid(param, f"{param} is {len(value)} characters long; at most {limit} "
                          "are allowed")
        return value

    def _check_upload(self, size: int) -> None:
        limit = self.args.audio.max_upload_bytes
        if size > limit:
            raise ApiError(
                413, "audio_too_large", f"reference_audio is {size} bytes; at most {limit} are allowed",
                "reference_audio",
            )
        if size == 0:
            raise invalid("reference_audio", "reference_audio is empty", "audio_empty")

    @contextlib.contextmanager
    def admitted(self):
        """Count a request in flight, or refuse it with 503 + Retry-After when full."""
        if self.in_flight >= self.args.ingress.max_concurrent:
            raise overloaded(
                f"{self.in_flight} requests are in flight (MAX_CONCURRENT); retry later.",
                self.args.ingress.retry_after_s,
            )
        self.in_flight += 1
        tts_metrics().set_queue_length("ingress", self.in_flight)
        try:
            yield
        finally:
            self.in_flight -= 1
            tts_metrics().set_queue_length("ingress", self.in_flight)

    async def _run(
        self,
        deployment: str,
        info: ModelInfo,
        request: SynthesisRequest,
        output: RenderOptions,
        request_id: str,
        synthesize: Callable[[], Awaitable[SynthesisResult]] | None = None,
        extra: dict | None = None,
    ) -> AudioOutput:
        started = time.perf_counter()
        scope = await self.cache_scope()
        key = cache_key(
            scope=scope,
            deployment=deployment,
            model=info.model,
            text=request.text,
            language=request.language,
            speaker=request.speaker,
            instruct=request.instruct,
            seed=request.seed,
            max_new_tokens=request.max_new_tokens,
            min_frames=request.min_frames,
            output=output.model_dump(mode="json"),
            extra=extra or {},
        )
        if hit := self.cached(key, scope):
            tts_metrics().count_cached(info.kind.value)
            return hit.model_copy(update={"request_id": request_id, "cached": True})
        with self.admitted():
            call = synthesize or (lambda: self.handle(deployment).synthesize.remote(request))
            timeout = self.args.ingress.request_timeout_s
            with self._watching(deployment):
                result: SynthesisResult = await asyncio.wait_for(call(), timeout)
            rendered = await self._render(result, output, timeout)
        _observe(info, request, result, time.perf_counter() - started)
        out = AudioOutput(
            audio=rendered.data,
            format=rendered.format,
            content_type=rendered.content_type,
            sample_rate=rendered.sample_rate,
            duration_seconds=rendered.duration_seconds,
            processing_seconds=time.perf_counter() - started,
            request_id=request_id,
            cache_key=key if self._cache.max_entries > 0 else None,
        )
        self._cache.put(key, (scope, out))
        return out

    async def _render(self, result: SynthesisResult, options: RenderOptions, timeout: float) -> RenderedAudio:
        if needs_processing(options, result.sample_rate):
            return await asyncio.wait_for(
                self._audio.render.remote(result.audio, result.sample_rate, options), timeout
            )
        # WAV/PCM packing at the model's rate: cheaper here than a hop to AudioProcessor.
        return render(result.audio, result.sample_rate, options)

    # ------------------------------------------------------------------------ read models
    async def health(self) -> dict:
        """The seed's health fields plus each deployment's replicas and model state."""
        report = await graph_health(self._models)
        return {
            "status": "healthy" if report.ready else "degraded",
            "model_loaded": report.models_loaded,
            "device": report.device,
            "concurrent_tasks": self.in_flight,
            "uptime_seconds": round(time.monotonic() - self.started_at, 3),
            "deployments": report.deployments,
        }

    async def voices(self) -> list[catalog.VoiceEntry]:
        if CUSTOM_VOICE not in self._models:
            return []
        return catalog.voice_entries(await self.model_info(CUSTOM_VOICE))


def _observe_stream(kind: str, stream: AudioStream, characters: int, started: float) -> None:
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


def _observe(info: ModelInfo, request: SynthesisRequest, result: SynthesisResult, total: float) -> None:
    """Record a finished synthesis (non-streaming: its first audio is its whole audio)."""
    # Sizes and timings only: the text and the audio are never logged.
    logger.info("synthesized model_kind=%s chars=%d audio_s=%.2f generation_s=%.2f total_s=%.2f",
                info.kind.value, len(request.text), result.duration_seconds,
                result.generation_seconds, total)
    metrics = tts_metrics()
    metrics.observe_first_audio(info.kind.value, total)
    metrics.observe_synthesis(
        info.kind.value,
        total_seconds=total,
        generation_seconds=result.generation_seconds,
        audio_seconds=result.duration_seconds,
        characters=len(request.text),
    )
