"""The forced-aligner deployment: Qwen3-ForcedAligner through qwen-asr's own classes.

`align(audio, sample_rate, words)` times `words` (the spoken words, in order: the ingress
sends them separated by spaces, so the aligner's own tokenizer keeps them one for one) in
`audio` and answers one (start, end) in seconds per word, as the model says them: the
ingress repairs them (serve_app.synthesis.word_timing). Bound once, on a GPU in production
(the 0.6B checkpoint), on a CPU with the random-weight tiny checkpoint in the CPU profile.
Calls run one at a time per replica on a worker thread (a single forward pass each).
"""

from __future__ import annotations

import asyncio
import logging
import time

import numpy as np
from ray import serve

from deployments.args import TINY_ALIGNER, AlignerArgs
from deployments.logging_setup import configure_replica_logging

logger = logging.getLogger("qtts.aligner")

#: The aligner's own tokenizer splits on spaces and times each piece; any language but
#: Japanese and Korean (which it re-tokenizes) keeps the ingress's words one for one.
ALIGN_LANGUAGE = "English"


def resolve_aligner_checkpoint(model: str) -> str:
    if model == TINY_ALIGNER:
        from deployments.aligner.tiny import ensure_tiny_aligner

        return str(ensure_tiny_aligner())
    return model


class Aligner:
    """The model, Ray-free (the deployment wraps it; tests use it directly)."""

    def __init__(self, args: AlignerArgs):
        import torch
        from qwen_asr import Qwen3ForcedAligner

        device = args.device
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        dtype = args.dtype
        if dtype == "auto":
            dtype = "bfloat16" if device.startswith("cuda") else "float32"
        if device == "cpu" and args.num_threads:
            torch.set_num_threads(args.num_threads)
        self.args = args
        self.device = device
        self.model = Qwen3ForcedAligner.from_pretrained(
            resolve_aligner_checkpoint(args.model), dtype=getattr(torch, dtype),
            device_map=device)

    def align(self, audio: np.ndarray, sample_rate: int, words: list[str]
              ) -> list[tuple[float, float]]:
        if not words:
            return []
        if len(audio) / sample_rate > self.args.max_audio_s:
            raise ValueError(f"audio longer than max_audio_s={self.args.max_audio_s}")
        text = " ".join(words)
        result = self.model.align(audio=(np.asarray(audio, dtype=np.float32), sample_rate),
                                  text=text, language=ALIGN_LANGUAGE)[0]
        return [(float(item.start_time), float(item.end_time)) for item in result]


@serve.deployment(
    ray_actor_options={"num_cpus": 1, "num_gpus": 1},
    max_ongoing_requests=16,
    max_queued_requests=128,
    health_check_period_s=10,
)
class AlignerServer:
    def __init__(self, args: AlignerArgs):
        configure_replica_logging()
        started = time.perf_counter()
        self._aligner = Aligner(args)
        self._lock = asyncio.Lock()
        logger.info("aligner %s on %s ready in %.1f s", args.model, self._aligner.device,
                    time.perf_counter() - started)

    async def align(self, audio: np.ndarray, sample_rate: int, words: list[str]
                    ) -> list[tuple[float, float]]:
        async with self._lock:  # one forward pass at a time; callers wait here, not a thread
            return await asyncio.to_thread(self._aligner.align, audio, sample_rate, words)

    async def info(self) -> dict:
        return {"model": self._aligner.args.model, "device": self._aligner.device}

    async def check_health(self) -> None:
        return None
