"""The model deployment: one class, bound three times (CustomVoice, VoiceDesign, VoiceClone).

Thin on purpose: the engine does the work (plain Python, tested without Ray). This file adds
what only a replica needs: batching of concurrent requests into one generate call, the
blocking generate off the event loop, a per-replica cache of clone prompts, health.
The model kind comes from the checkpoint, never from the deployment's name.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections import OrderedDict

import numpy as np
from ray import serve

from deployments.audio.reference import ReferenceAudio
from deployments.checkpoints import resolve_checkpoint
from deployments.engine import TTSEngine
from deployments.engine.types import ModelInfo, SynthesisRequest, SynthesisResult, VoicePrompt
from serve_app.args import ModelServerArgs

logger = logging.getLogger("qtts.model_server")


@serve.deployment(
    ray_actor_options={"num_cpus": 1, "num_gpus": 1},
    max_ongoing_requests=32,
    max_queued_requests=256,
    health_check_period_s=10,
)
class ModelServer:
    def __init__(self, args: ModelServerArgs):
        self._args = args
        checkpoint = resolve_checkpoint(args.engine.model)
        self._engine = TTSEngine.load(args.engine.model_copy(update={"model": checkpoint}))
        self._prompts: OrderedDict[str, VoicePrompt] = OrderedDict()
        self._synthesize_batch.set_max_batch_size(args.max_batch_size)
        self._synthesize_batch.set_batch_wait_timeout_s(args.batch_wait_timeout_s)
        info = self._engine.info
        logger.info("loaded %s (%s) on %s/%s", info.model, info.kind.value, info.device, info.dtype)

    async def info(self) -> ModelInfo:
        return self._engine.info

    async def synthesize(self, request: SynthesisRequest) -> SynthesisResult:
        self._engine.validate(request)  # a bad request fails alone, never its batch
        return await self._synthesize_batch(request)

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

    @serve.batch(max_batch_size=8, batch_wait_timeout_s=0.01)
    async def _synthesize_batch(self, requests: list[SynthesisRequest]) -> list[SynthesisResult]:
        return await asyncio.to_thread(self._engine.synthesize, requests)

    def check_health(self) -> None:
        if self._engine is None:
            raise RuntimeError("model not loaded")


def _prompt_key(reference: ReferenceAudio, ref_text: str | None, x_vector_only: bool) -> str:
    digest = hashlib.sha256(np.ascontiguousarray(reference.samples).tobytes())
    digest.update(f"|{reference.sample_rate}|{x_vector_only}|{ref_text or ''}".encode())
    return digest.hexdigest()


def _with_prompt(request: SynthesisRequest, prompt: VoicePrompt) -> SynthesisRequest:
    from dataclasses import replace

    return replace(request, voice_prompt=prompt)
