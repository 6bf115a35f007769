"""The model deployment: one class, bound three times (CustomVoice, VoiceDesign, VoiceClone).

Thin on purpose: the engine does the work (plain Python, tested without Ray). With the
batched backend (the default) the engine runs one step loop per replica: every request,
streamed or not, waits for a slot in it without holding a thread, and a caller that goes
away (Ray cancels the request) frees its slot within one step; when slots and wait queue
are full the engine raises `EngineOverloadedError` (503 + Retry-After at the ingress). With
the reference backend, concurrent requests are grouped by `@serve.batch` into one stock
generate call. This file adds what only a replica needs: a per-replica cache of clone
prompts, engine metrics, health. The model kind comes from the checkpoint, never from the
deployment's name.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import logging
import time
from collections import OrderedDict
from collections.abc import AsyncIterator
from dataclasses import replace

import numpy as np
from ray import serve

from deployments.args import ModelServerArgs
from deployments.audio.reference import ReferenceAudio
from deployments.checkpoints import resolve_checkpoint
from deployments.engine.types import (
    AudioChunk,
    ModelInfo,
    StepObserver,
    SynthesisRequest,
    SynthesisResult,
    VoicePrompt,
)
from deployments.logging_setup import configure_replica_logging
from deployments.metrics import tts_metrics
from deployments.text_relay import TextSource

logger = logging.getLogger("qtts.model_server")


@serve.deployment(
    ray_actor_options={"num_cpus": 1, "num_gpus": 1},
    max_ongoing_requests=32,  # configs set it to engine.max_slots + engine.max_waiting
    max_queued_requests=256,
    health_check_period_s=10,
)
class ModelServer:
    def __init__(self, args: ModelServerArgs):
        configure_replica_logging()
        started = time.perf_counter()
        self._args = args
        self._fatal: str | None = None  # set when the device is unusable: restart the replica
        self._waiting = 0
        checkpoint = resolve_checkpoint(args.engine.model)
        from deployments.engine import TTSEngine  # torch: only in the replica, not the driver

        self._engine = TTSEngine.load(args.engine.model_copy(update={"model": checkpoint}))
        self._prompts: OrderedDict[str, VoicePrompt] = OrderedDict()
        self._batched = self._engine.loop is not None
        if self._batched:
            self._engine.set_observer(_EngineMetrics(self._engine.info.kind.value))
        else:
            self._synthesize_batch.set_max_batch_size(args.max_batch_size)
            self._synthesize_batch.set_batch_wait_timeout_s(args.batch_wait_timeout_s)
        info = self._engine.info
        self._load_seconds = time.perf_counter() - started
        logger.info("loaded %s (%s) on %s/%s in %.1fs", info.model, info.kind.value, info.device,
                    info.dtype, self._load_seconds)

    async def info(self) -> ModelInfo:
        return self._engine.info

    async def status(self) -> dict:
        """This replica's model state, for /api/health (a replica exists only once loaded)."""
        info = self._engine.info
        out = {"loaded": True, "warmed": self._engine.config.warmup, "model": info.model,
               "kind": info.kind.value, "device": info.device, "dtype": info.dtype,
               "load_seconds": round(self._load_seconds, 3), "failed": self._fatal,
               "backend": self._engine.backend}
        loop = self._engine.loop
        if loop is not None:
            st = loop.loop_stats
            out.update(slots=loop.capacity, active_slots=st.active, waiting=st.waiting,
                       waiting_for_text=st.waiting_for_text, memory_plan=info.memory_plan,
                       compile=loop.runner.compile_mode)
        return out

    async def synthesize(self, request: SynthesisRequest) -> SynthesisResult:
        self._engine.validate(request)  # a bad request fails alone, never its batch
        self._waiting += 1
        tts_metrics().set_queue_length("model", self._waiting)
        try:
            if self._batched:  # cancellation of this call cancels the job: its slot frees
                return await self._engine.asynthesize(request)
            return await self._synthesize_batch(request)
        except Exception as exc:
            self._note_failure(exc)
            raise
        finally:
            self._waiting -= 1
            tts_metrics().set_queue_length("model", self._waiting)

    async def synthesize_with_reference(
        self,
        request: SynthesisRequest,
        reference: ReferenceAudio,
        ref_text: str | None,
        x_vector_only: bool,
    ) -> SynthesisResult:
        """Voice cloning in one hop: build (or reuse) the clone prompt, then synthesize."""
        prompt = await self.voice_prompt(reference, ref_text, x_vector_only)
        return await self.synthesize(_with_prompt(request, prompt))

    async def voice_prompt(
        self, reference: ReferenceAudio, ref_text: str | None, x_vector_only: bool
    ) -> VoicePrompt:
        key = _prompt_key(reference, ref_text, x_vector_only)
        prompt = self._prompts.get(key)
        if prompt is not None:
            self._prompts.move_to_end(key)
            return prompt
        prompt = await asyncio.to_thread(
            self._engine.build_voice_prompt,
            reference.samples,
            reference.sample_rate,
            ref_text=ref_text,
            x_vector_only=x_vector_only,
        )
        if self._args.voice_prompt_cache_size > 0:
            self._prompts[key] = prompt
            while len(self._prompts) > self._args.voice_prompt_cache_size:
                self._prompts.popitem(last=False)
        return prompt

    # ------------------------------------------------------------------ streaming
    async def stream(self, request: SynthesisRequest) -> AsyncIterator[AudioChunk]:
        """Stream `request` as PCM chunks while it is generated: call through
        `handle.options(stream=True).stream.remote(request)`. The last chunk has final=True.
        When the caller stops reading (Ray cancels this generator), generation stops at the
        next frame and the engine lock is released for the next request."""
        async for chunk in self._forward(self._engine.astream(request, self._args.streaming)):
            yield chunk

    async def stream_with_reference(
        self,
        request: SynthesisRequest,
        reference: ReferenceAudio,
        ref_text: str | None,
        x_vector_only: bool,
    ) -> AsyncIterator[AudioChunk]:
        """Voice cloning, streamed: build (or reuse) the clone prompt, then `stream`."""
        prompt = await self.voice_prompt(reference, ref_text, x_vector_only)
        async for chunk in self.stream(_with_prompt(request, prompt)):
            yield chunk

    async def stream_text(self, request: SynthesisRequest, source: TextSource) -> AsyncIterator[AudioChunk]:
        """Stream `request` while its text is still arriving: the text is read from `source`
        (deployments.text_relay; `request.text` is ignored) and the engine's slot reads it
        as it settles (TTSEngine.astream_text). Chunks carry `text_chars`, how much of the
        text the model had read. Ends after the final chunk; the caller going away (or the
        text's relay) stops generation at the next step."""
        from deployments.engine import TextInput

        text = TextInput()
        stream = self._engine.astream_text(request, text, self._args.streaming)  # validates
        pump = asyncio.get_running_loop().create_task(source.pump(text))

        def relay_gone(task: asyncio.Task) -> None:  # no more text can come: stop
            if not task.cancelled() and task.exception() is not None:
                logger.warning("text relay failed: %s", type(task.exception()).__name__)
                stream.cancel()

        pump.add_done_callback(relay_gone)
        try:
            async for chunk in self._forward(stream):
                yield chunk
        finally:
            pump.cancel()

    async def _forward(self, stream) -> AsyncIterator[AudioChunk]:
        """The chunks of an engine stream (validated when it was made), those already
        waiting merged into one item (`AsyncSynthesisStream.coalesced`: a Ray item costs
        the ingress a hop, an encode and a write, so a replica whose event loop falls behind
        sends fewer, larger items); a failure is noted for health, and the stream is
        cancelled when the caller stops early (a no-op after its final chunk)."""
        try:
            async for chunk in stream.coalesced():
                yield chunk
        except Exception as exc:
            self._note_failure(exc)
            raise
        finally:
            stream.cancel()

    async def stream_stats(self) -> dict:
        """Streaming counters of this replica (frames generated, streams started/cancelled,
        active): how tests and operators see that a dropped stream stopped generating. The
        batched backend adds its step loop's `late_chunks` (chunks that left after their
        listener had run dry) and `refused` (503 after the first-audio bound): what a load
        benchmark needs to tell a gap made here from one made on the way to the listener."""
        stats = dataclasses.asdict(self._engine.stream_stats)
        loop = self._engine.loop
        if loop is not None:
            stats.update(late_chunks=loop.loop_stats.late_chunks, refused=loop.loop_stats.refused)
        return stats

    @serve.batch(max_batch_size=8, batch_wait_timeout_s=0.01)
    async def _synthesize_batch(self, requests: list[SynthesisRequest]) -> list[SynthesisResult]:
        """Reference backend only: concurrent requests into one stock generate call."""
        return await asyncio.to_thread(self._engine.synthesize, requests)

    def __del__(self) -> None:
        engine = getattr(self, "_engine", None)
        if engine is not None:
            engine.close()

    def _note_failure(self, exc: BaseException) -> None:
        """A CUDA error poisons the process's context: every later call fails the same way.
        Mark the replica so check_health fails and Serve replaces it."""
        if "CUDA error" in str(exc) and self._fatal is None:
            self._fatal = f"{type(exc).__name__}: CUDA error"
            logger.error("model replica unusable (%s); failing health checks", self._fatal)

    def check_health(self) -> None:
        """Serve restarts a replica whose check fails (every health_check_period_s)."""
        if getattr(self, "_engine", None) is None:
            raise RuntimeError("model not loaded")
        if self._fatal is not None:
            raise RuntimeError(f"model replica unusable: {self._fatal}")


class _EngineMetrics(StepObserver):
    """The step loop's hooks -> this replica's Prometheus metrics (called on the loop thread;
    gauges only when they change)."""

    def __init__(self, model_kind: str) -> None:
        self._kind = model_kind
        self._occupancy: tuple[int, int] | None = None

    def on_step(self, batch_size: int, step_seconds: float) -> None:
        tts_metrics().observe_engine_step(self._kind, batch_size, step_seconds)

    def on_admit(self, queue_wait_seconds: float) -> None:
        tts_metrics().observe_engine_queue_wait(self._kind, queue_wait_seconds)

    def on_chunk(self, margin_seconds: float, late: bool) -> None:  # codec thread
        tts_metrics().observe_engine_chunk(self._kind, margin_seconds, late)

    def on_refused(self, queue_wait_seconds: float) -> None:
        tts_metrics().count_engine_refused(self._kind, queue_wait_seconds)

    def on_occupancy(self, active: int, waiting: int) -> None:
        if self._occupancy != (active, waiting):
            self._occupancy = (active, waiting)
            tts_metrics().set_engine_active_slots(self._kind, active)


def _prompt_key(reference: ReferenceAudio, ref_text: str | None, x_vector_only: bool) -> str:
    digest = hashlib.sha256(np.ascontiguousarray(reference.samples).tobytes())
    digest.update(f"|{reference.sample_rate}|{x_vector_only}|{ref_text or ''}".encode())
    return digest.hexdigest()


def _with_prompt(request: SynthesisRequest, prompt: VoicePrompt) -> SynthesisRequest:
    return replace(request, voice_prompt=prompt)
