"""The model deployment: one class, bound three times (CustomVoice, VoiceDesign, VoiceClone).

Thin on purpose: the engine does the work (plain Python, tested without Ray). This file adds
what only a replica needs: batching of concurrent requests into one generate call, the
blocking generate off the event loop, a per-replica cache of clone prompts, health.
The model kind comes from the checkpoint, never from the deployment's name.
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

from deployments.audio.reference import ReferenceAudio
from deployments.checkpoints import resolve_checkpoint
from deployments.engine import TTSEngine
from deployments.engine.types import (
    AudioChunk,
    ModelInfo,
    SynthesisRequest,
    SynthesisResult,
    VoicePrompt,
)
from serve_app.args import ModelServerArgs
from serve_app.logging_setup import configure_replica_logging
from serve_app.metrics import tts_metrics

logger = logging.getLogger("qtts.model_server")


@serve.deployment(
    ray_actor_options={"num_cpus": 1, "num_gpus": 1},
    max_ongoing_requests=32,
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
        self._engine = TTSEngine.load(args.engine.model_copy(update={"model": checkpoint}))
        self._prompts: OrderedDict[str, VoicePrompt] = OrderedDict()
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
        return {"loaded": True, "warmed": self._engine.config.warmup, "model": info.model,
                "kind": info.kind.value, "device": info.device, "dtype": info.dtype,
                "load_seconds": round(self._load_seconds, 3), "failed": self._fatal}

    async def synthesize(self, request: SynthesisRequest) -> SynthesisResult:
        self._engine.validate(request)  # a bad request fails alone, never its batch
        self._waiting += 1
        tts_metrics().set_queue_length("model", self._waiting)
        try:
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
        stream = self._engine.astream(request, self._args.streaming)  # validates first
        try:
            async for chunk in stream:
                yield chunk
        except Exception as exc:
            self._note_failure(exc)
            raise
        finally:
            stream.cancel()  # no-op after the final chunk; stops generation otherwise

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

    async def stream_stats(self) -> dict:
        """Streaming counters of this replica (frames generated, streams started/cancelled,
        active): how tests and operators see that a dropped stream stopped generating."""
        return dataclasses.asdict(self._engine.stream_stats)

    @serve.batch(max_batch_size=8, batch_wait_timeout_s=0.01)
    async def _synthesize_batch(self, requests: list[SynthesisRequest]) -> list[SynthesisResult]:
        return await asyncio.to_thread(self._engine.synthesize, requests)

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


def _prompt_key(reference: ReferenceAudio, ref_text: str | None, x_vector_only: bool) -> str:
    digest = hashlib.sha256(np.ascontiguousarray(reference.samples).tobytes())
    digest.update(f"|{reference.sample_rate}|{x_vector_only}|{ref_text or ''}".encode())
    return digest.hexdigest()


def _with_prompt(request: SynthesisRequest, prompt: VoicePrompt) -> SynthesisRequest:
    return replace(request, voice_prompt=prompt)
