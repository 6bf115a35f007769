"""Per-request state of the engine: what a validated request means in the model's terms
(`PreparedRequest`), its job in the step loop (`Job`), the host state of the cache slot it
holds while it runs (`SlotState`), and the counters the loop and the streams keep.

Below every other engine module: it imports nothing of the engine but its public types and
the text input, so the scheduler, the model runner, the output stage and the backends all
read these names from here (imports point one way).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from deployments.engine.pacing import StreamClock
from deployments.engine.text_input import SettledTokens, TextInput
from deployments.engine.types import (
    AudioChunk,
    EngineConfig,
    EngineError,
    StreamChunking,
    SynthesisResult,
    VoicePrompt,
)

if TYPE_CHECKING:
    import torch

    from deployments.engine.codec import CodecState

log = logging.getLogger(__name__)

#: Where a request's chunks (streaming), final chunk and error go, in order, from the codec
#: thread (batched backend) or the generation thread (reference backend).
Sink = Callable[[AudioChunk | BaseException], None]


@dataclass(frozen=True)
class ResolvedSampling:
    """Every sampling setting of one request, defaults filled in (both backends use it)."""

    do_sample: bool
    temperature: float
    top_k: int
    top_p: float
    repetition_penalty: float
    subtalker_do_sample: bool
    subtalker_temperature: float
    subtalker_top_k: int
    subtalker_top_p: float
    subtalker_repetition_penalty: float = 1.0

    def generate_kwargs(self) -> dict[str, Any]:
        """The qwen-tts generate kwargs (reference backend)."""
        return {"do_sample": self.do_sample, "temperature": self.temperature,
                "top_k": self.top_k, "top_p": self.top_p,
                "repetition_penalty": self.repetition_penalty,
                "subtalker_dosample": self.subtalker_do_sample,
                "subtalker_temperature": self.subtalker_temperature,
                "subtalker_top_k": self.subtalker_top_k, "subtalker_top_p": self.subtalker_top_p}


@dataclass(frozen=True)
class PreparedRequest:
    """A validated request in the model's own terms (lower-case ids, effective limits)."""

    text: str
    language: str
    speaker: str | None
    instruct: str
    voice_prompt: VoicePrompt | None
    seed: int | None
    max_new_tokens: int
    min_frames: int = 0
    sampling: ResolvedSampling | None = None
    non_streaming_mode: bool = True  # how qwen-tts feeds the text (all at once vs interleaved)
    background: bool = False  # yields its steps to urgent streams (SynthesisRequest.background)
    arrived_at: float | None = None  # wall clock, SynthesisRequest.arrived_at

    @property
    def group_key(self) -> tuple:
        """Requests the reference backend can run in one generate call share this."""
        return (self.max_new_tokens, self.min_frames, self.sampling, self.non_streaming_mode)


def frame_budget(config: EngineConfig, text_tokens: int, min_frames: int) -> int:
    """The runaway guard: frames a request may make before its text says it must be over."""
    budget = config.budget_floor_frames + math.ceil(config.max_frames_per_text_token * text_tokens)
    return max(budget, min_frames)


class Job:
    """One request inside the loop. `sink` gets `AudioChunk`s (streaming) and, for every
    job, the final chunk or the error; `done` is set when it left the loop."""

    def __init__(self, prepared: PreparedRequest, *, chunking: StreamChunking | None,
                 sink: Sink | None = None, text_input: TextInput | None = None) -> None:
        self.prepared = prepared
        self.chunking = chunking
        self.sink = sink
        #: text still arriving (streaming-text mode): the job is admitted once the prompt's
        #: text has settled, and its slot waits for text instead of running ahead
        self.text_input = text_input
        self.settled: SettledTokens | None = None  # its tokens (loop thread)
        self.prompt_tokens = 1  # settled text tokens the prompt needs (loop thread)
        self.text_version = -1  # of the text last settled (loop thread)
        self.submitted_at = time.perf_counter()
        self.started_at = self.submitted_at
        #: when its first-audio bound started (perf_counter): the service's arrival when the
        #: request says (time queued before the engine counts), else its submission here
        self.arrived_at = self.submitted_at - (
            0.0 if prepared.arrived_at is None else max(0.0, time.time() - prepared.arrived_at))
        self.cancelled = threading.Event()
        self.done = threading.Event()
        self.result: SynthesisResult | None = None
        self.error: BaseException | None = None
        self.frames = 0
        self.queue_wait_s = 0.0
        self.tracked = False  # counted in StreamStats.active
        self.clock = StreamClock()  # its listener, as the server sees it (streaming)
        self._callbacks: list[Callable[[Job], None]] = []

    @property
    def background(self) -> bool:
        return self.prepared.background

    def cancel(self) -> None:
        self.cancelled.set()

    def add_done_callback(self, fn: Callable[[Job], None]) -> None:
        """`fn(job)` runs on the loop thread once the job is done (at once if it is)."""
        self._callbacks.append(fn)
        if self.done.is_set():
            fn(self)

    def set_done(self) -> None:
        self.done.set()
        for fn in self._callbacks:
            try:
                fn(self)
            except Exception:  # noqa: BLE001 - a caller's callback must not stop the loop
                log.exception("job done callback failed")

    def wait(self, timeout: float | None = None) -> SynthesisResult:
        if not self.done.wait(timeout):
            raise EngineError("synthesis timed out")
        if self.error is not None:
            raise self.error
        assert self.result is not None
        return self.result


@dataclass
class SlotState:
    """Host state of an active job's cache slot (its tensors live in the model runner's row
    buffers). Three kinds of fields: the limits fixed at admission, the output progress (read
    by the output stage) and the arriving-text bookkeeping (read by the scheduler)."""

    job: Job
    seed: int  # the counter-based sampler's key (random for an unseeded request)
    trailing: torch.Tensor  # (N, D) text conditioning fed one per step, then tts_pad
    cap: int  # frames this job may make
    budget_bound: bool  # the cap is the runaway budget, not max_new_tokens
    min_frames: int
    prompt_len: int
    # output progress
    codes: list[torch.Tensor] = field(default_factory=list)  # (16,) frames, on the host
    prefix: torch.Tensor | None = None  # ICL reference codes (T, 16)
    emitted: int = 0  # frames already handed to the codec thread (of codes)
    chunks_due: int = 0  # chunks handed to the codec thread
    chunks: int = 0  # chunks emitted
    tail: np.ndarray | None = None  # audio of the last chunk, sent with final=True
    peak_batch: int = 0  # most slots that stepped together with this one
    codec: CodecState | None = None  # the stream's decoder state (codec thread only)
    text_tokens: int = 0
    # text still arriving (job.text_input): the trailing rows are rebuilt as text settles
    length_cap: int = 0  # max_new_tokens - 1
    room: int = 0  # cache positions left after the prompt
    ref_ids: list[int] = field(default_factory=list)  # ICL: the reference text's tokens
    skip: int = 0  # rows of ref_ids + text ids that are in the prompt, not in trailing
    trailing_ids: list[int] = field(default_factory=list)  # ids of the trailing rows so far
    text_closed: bool = True  # the trailing rows end with tts_eos
    final_chars: int = 0  # text_chars of the final chunk
    lookahead: int = 0  # EngineConfig.text_lookahead_tokens
    # prefill: the prompt's embeddings not in the cache yet (a long one goes in by chunks)
    pending: torch.Tensor | None = None  # (1, R, D)
    prefilled: int = 0

    @property
    def position(self) -> int:
        """The cache position the next step (or prefill chunk) writes: known on the host,
        no device read."""
        return self.prefilled if self.pending is not None else self.prompt_len + self.job.frames

    @property
    def ready(self) -> bool:
        """True when the next step may include this slot (prefilled, its text there)."""
        return self.pending is None and not self.waits_for_text

    @property
    def waits_for_text(self) -> bool:
        """True while the next step would read text that has not arrived (or settled)."""
        return not self.text_closed and self.trailing.shape[0] <= self.job.frames + self.lookahead


@dataclass
class LoopStats:
    """What the step loop did, for metrics (read from any thread)."""

    active: int = 0
    waiting: int = 0
    steps: int = 0
    last_batch_size: int = 0
    last_step_seconds: float = 0.0
    admitted: int = 0
    rejected: int = 0
    refused: int = 0  # waited their first-audio bound without a slot that could keep them
    late_chunks: int = 0  # chunks that left after their listener had run dry
    waiting_for_text: int = 0  # slots holding their cache until their text arrives
    retokenized: int = 0  # text inputs whose whole-text tokens differed from the settled ones


@dataclass
class StreamStats:
    """Counters of one engine's streaming work (read by the model server and tests)."""

    frames_generated: int = 0
    streams_started: int = 0
    streams_cancelled: int = 0
    active: int = 0
