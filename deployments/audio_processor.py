"""The AudioProcessor deployment: CPU audio work on whole buffers, isolated from GPU replicas.

Untrusted uploads are decoded here, so a decoder crash takes down an audio replica, never a
model replica or the ingress. Wraps the Ray-free library in `deployments.audio`.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading

import numpy as np
from ray import serve

from deployments.args import AudioArgs
from deployments.audio import (
    RenderedAudio,
    RenderOptions,
    change_speed,
    prepare_reference,
    render,
    shift_pitch,
    warm_up,
)
from deployments.audio.reference import ReferenceAudio, ReferenceLimits
from deployments.logging_setup import configure_replica_logging

logger = logging.getLogger("qtts.audio_processor")


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
        # librosa's lazy imports and numba compilation (seconds of CPU) are paid once, in the
        # background at the lowest CPU priority: the replica is ready at once, and on a small
        # machine the warm-up does not slow the model replicas starting beside it. A request
        # that needs speed/pitch before it is done waits for it (the import lock).
        self._warm = threading.Thread(target=_warm_up_quietly, name="audio-warm-up", daemon=True)
        self._warm.start()

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

    async def prosody(self, samples: np.ndarray, sample_rate: int, speed: float,
                      pitch: float) -> np.ndarray:
        """An SSML <prosody> span's audio at `speed` (time-stretch) and `pitch` (frequency
        ratio), float PCM in and out at `sample_rate`, as `render` applies them."""
        return await asyncio.to_thread(_prosody, samples, sample_rate, speed, pitch)


def _prosody(samples: np.ndarray, sample_rate: int, speed: float, pitch: float) -> np.ndarray:
    if pitch != 1.0:
        samples = shift_pitch(samples, sample_rate, pitch)
    if speed != 1.0:
        samples = change_speed(samples, sample_rate, speed)
    return samples.astype(np.float32)


def _warm_up_quietly() -> None:
    try:  # Linux: the priority of this thread only
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)
    except (AttributeError, OSError):
        pass
    try:
        warm_up()
    except Exception:  # noqa: BLE001 - the first request then pays the cost, or reports it
        logger.exception("audio warm-up failed")
