"""The AudioProcessor deployment: CPU audio work on whole buffers, isolated from GPU replicas.

Untrusted uploads are decoded here, so a decoder crash takes down an audio replica, never a
model replica or the ingress. Wraps the Ray-free library in `deployments.audio`.
"""

from __future__ import annotations

import asyncio

import numpy as np
from ray import serve

from deployments.audio import RenderedAudio, RenderOptions, prepare_reference, render, warm_up
from deployments.audio.reference import ReferenceAudio, ReferenceLimits
from serve_app.args import AudioArgs
from serve_app.logging_setup import configure_replica_logging


@serve.deployment(
    ray_actor_options={"num_cpus": 1},
    max_ongoing_requests=8,
    max_queued_requests=256,
)
class AudioProcessor:
    def __init__(self, args: AudioArgs):
        configure_replica_logging()
        self._args = args
        self._limits = ReferenceLimits(
            max_bytes=args.max_upload_bytes,
            min_seconds=args.min_reference_seconds,
            max_seconds=args.max_reference_seconds,
        )
        warm_up()  # librosa's lazy imports and compilation: seconds, paid here not per request

    async def prepare_reference(self, data: bytes, param: str = "reference_audio") -> ReferenceAudio:
        return await asyncio.to_thread(
            prepare_reference,
            data,
            limits=self._limits,
            target_lufs=self._args.reference_loudness_lufs,
            param=param,
        )

    async def render(self, samples: np.ndarray, sample_rate: int, options: RenderOptions) -> RenderedAudio:
        return await asyncio.to_thread(render, samples, sample_rate, options)
