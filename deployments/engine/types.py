"""The engine's narrow interface: what goes into a synthesis and what comes out.

Plain dataclasses and pydantic models only (no torch, no Ray): they cross Ray handles, so
they must pickle cheaply, and the ingress imports them without loading a model.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

#: Qwen3-TTS 12 Hz codec: every model kind speaks at this rate.
MODEL_SAMPLE_RATE = 24_000


class ModelKind(enum.StrEnum):
    """`config.json: tts_model_type` of a Qwen3-TTS checkpoint."""

    CUSTOM_VOICE = "custom_voice"
    VOICE_DESIGN = "voice_design"
    BASE = "base"


class EngineConfig(BaseModel):
    """How one model server loads its checkpoint (one per deployment)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str = Field(description="Hub id (e.g. Qwen/Qwen3-TTS-12Hz-1.7B-CustomVoice) or local directory")
    device: str = Field("auto", description="'auto' (cuda if available), 'cpu', 'cuda', 'cuda:N'")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto", description="'auto': bfloat16 on cuda, float32 on cpu"
    )
    attn_implementation: Literal["auto", "sdpa", "flash_attention_2", "eager"] = Field(
        "auto", description="'auto': flash_attention_2 when installed on cuda, else sdpa"
    )
    max_new_tokens: int = Field(
        2048, ge=2, description="Upper bound of codec frames per request (+1): caps runaway generation"
    )
    do_sample: bool = Field(True, description="False: greedy decoding on both talker levels")
    warmup: bool = Field(True, description="Run one short synthesis at load")
    num_threads: int | None = Field(None, ge=1, description="torch CPU threads (None: torch default)")
    backend: Literal["batched", "reference"] = Field(
        "batched",
        description="'batched': the continuous-batching step loop (every request on this model "
        "advances one frame per step together); 'reference': qwen-tts's stock generate, one "
        "utterance at a time (kept for parity checks)",
    )
    max_slots: int = Field(16, ge=1, le=1024, description="Batched backend: concurrent "
                           "requests in the step loop (static KV-cache slots)")
    max_context_tokens: int = Field(
        4096, ge=64, description="Batched backend: KV-cache length of one slot (prompt + frames)"
    )
    max_waiting: int = Field(64, ge=0, description="Batched backend: requests waiting for a "
                             "free slot; beyond it a request fails with EngineOverloadedError")
    max_frames_per_text_token: float = Field(
        12.0, gt=0, description="Runaway guard: a request's frame budget is "
        "budget_floor_frames + this x its text tokens (below max_new_tokens), so a missed EOS "
        "ends at a sane length",
    )
    budget_floor_frames: int = Field(25, ge=1, description="Runaway guard: frames every request "
                                     "may have whatever its text length (25 = 2 s)")
    retry_after_s: int = Field(1, ge=1, description="Retry-After of an overloaded engine")
    compile: Literal["auto", "none", "compile", "cudagraphs"] = Field(
        "auto", description="Batched backend, how a step runs: 'none' eager; 'compile' "
        "torch.compile(fullgraph=True, dynamic=False), once per (batch, context) bucket; "
        "'cudagraphs' one CUDA graph per bucket, captured on first use (CUDA only); 'auto': "
        "cudagraphs on CUDA, else none (the faster on CPU by benchmarks/engine.py)",
    )
    batch_buckets: tuple[int, ...] | None = Field(
        None, description="Batched backend: the batch sizes a step is padded to (one compiled "
        "graph or CUDA graph each; the slot count is always one); None: 1, 2, 4, ... up to "
        "the slot count",
    )
    memory_fraction: float | None = Field(
        None, gt=0, le=1, description="Batched backend: plan slots and context from free device "
        "memory x this after loading (like vLLM's gpu_memory_utilization; max_slots and "
        "max_context_tokens become upper bounds); None: use them as given",
    )
    prefill_chunk_tokens: int = Field(
        512, ge=16, description="Batched backend: a prompt longer than this (a clone's reference "
        "codes) is prefilled in chunks of it, one per step, so running streams wait at most "
        "one chunk",
    )
    pacing: bool = Field(
        False, description="Batched backend: margin-driven chunks and urgency (docs/streaming.md; "
        "off by default: over HTTP on a loaded CPU it served less than the fixed schedule): "
        "a stream's chunks go out when its listener's margin needs them (chunk_frames is the "
        "largest), and while a stream is below pacing_floor_s prefills wait and non-streaming "
        "rows sit out the step; False: fixed chunk sizes, every ready row steps",
    )
    pacing_reserve_s: float = Field(
        0.12, ge=0, le=5, description="Batched backend, pacing: the margin (audio sent minus "
        "playback since the first audio) a stream's next chunk must still leave when it lands")
    pacing_min_chunk_frames: int = Field(
        1, ge=1, le=64, description="Batched backend, pacing: the fewest frames a later chunk "
        "holds (a stream's last chunk excepted). Every chunk costs a hop through the graph, "
        "an encode and a write on the ingress; 1 lets a thin margin send every frame alone. "
        "Above 1, a first chunk also holds more than first_chunk_frames while steps are so "
        "slow that the floor's frames would come after it had played")
    pacing_floor_s: float = Field(
        0.06, ge=0, le=5, description="Batched backend, pacing: a stream whose margin (with the "
        "frames made and not yet sent) is below this is urgent: prefills wait, non-streaming "
        "and background rows and streams more than pacing_ahead_s ahead sit out the step")
    pacing_ahead_s: float = Field(
        1.0, gt=0, le=60, description="Batched backend, pacing: a stream this far ahead of its "
        "listener sits out steps while another stream is urgent")
    admission_headroom_s: float = Field(
        0.15, ge=0, le=5, description="Batched backend, admission (first_audio_bound_s set): a "
        "waiting request goes into a slot only while every started stream's projected margin "
        "stays above this with it stepping beside them")
    first_audio_bound_s: float | None = Field(
        None, gt=0, le=60, description="Batched backend: admission by what can be kept. A "
        "streaming request waits for a slot (or for the projected margins to allow one more "
        "stream) at most this long, then fails with EngineOverloadedError (503 + Retry-After) "
        "instead of being admitted to stutter; None: admitted whenever a slot is free")
    text_lookahead_tokens: int = Field(
        0, ge=0, le=64, description="Batched backend, text still arriving (incremental input): "
        "settled text tokens that must be buffered beyond the one a step reads before the step "
        "runs (0: a slot steps as soon as its next token is known; more: fewer stalls "
        "mid-phrase, later first audio; the audio is the same)",
    )


@dataclass(frozen=True)
class ModelInfo:
    """What a loaded checkpoint supports, read from the checkpoint itself."""

    kind: ModelKind
    model: str
    speakers: tuple[str, ...]  # lower-case ids as in config.json spk_id; empty unless CustomVoice
    dialect_speakers: dict[str, str]  # speaker id -> dialect name (e.g. "eric" -> "sichuan_dialect")
    languages: tuple[str, ...]  # lower-case model names, "auto" included
    sample_rate: int
    device: str
    dtype: str
    model_size: str  # tts_model_size from config.json ("0b6", "1b7", "tiny")
    #: batched backend: slots, context and cache bytes (`memory.MemoryPlan.as_dict`)
    memory_plan: dict | None = None


@dataclass(frozen=True)
class VoicePrompt:
    """A reusable voice-clone prompt (qwen-tts `VoiceClonePromptItem`, as numpy).

    `ref_code` is None in x-vector-only mode; in ICL mode it holds the reference audio's
    codec frames (T, 16) and `ref_text` its transcript.
    """

    ref_spk_embedding: np.ndarray  # float32 (D,)
    ref_code: np.ndarray | None = None  # int64 (T, 16)
    ref_text: str | None = None
    x_vector_only_mode: bool = False

    @property
    def icl_mode(self) -> bool:
        return not self.x_vector_only_mode


@dataclass(frozen=True)
class SynthesisRequest:
    """One utterance for one model kind.

    CustomVoice uses `speaker` (+ optional `instruct`), VoiceDesign uses `instruct` as the
    voice description, Base uses `voice_prompt`. `language` is a model language name
    ("english", ...) or "auto". `seed` makes the output reproducible: a seeded request is
    generated on its own (never inside a batch, whose sampling shares one RNG stream).
    """

    text: str
    language: str = "auto"
    speaker: str | None = None
    instruct: str | None = None
    voice_prompt: VoicePrompt | None = None
    seed: int | None = None
    max_new_tokens: int | None = None
    #: Benchmarking/testing aid: EOS is suppressed until this many frames exist (random
    #: weights then give known lengths). The frame cap (max_new_tokens - 1) still applies.
    min_frames: int | None = None
    sampling: SamplingParams | None = None
    #: How the talker reads the text: False puts all of it in the prompt (qwen-tts
    #: `non_streaming_mode=True`, its default for CustomVoice and VoiceDesign); True feeds one
    #: text token per codec frame beside the audio (the Base default, and the mode text that
    #: is still arriving needs). None: the model kind's qwen-tts default.
    streaming_text: bool | None = None
    #: Priority class: a background request (an async job's segment) yields its step to
    #: streams whose listener is about to run dry (batched backend, `EngineConfig.pacing`).
    background: bool = False
    #: Wall-clock time (time.time()) the request reached the service (the ingress, for a
    #: stream): the first-audio bound (EngineConfig.first_audio_bound_s) counts from it, so
    #: the time it queued before the engine (Serve's router, the replica) is counted too.
    arrived_at: float | None = None


@dataclass(frozen=True)
class SamplingParams:
    """Per-request sampling of both talker levels; None takes the checkpoint's
    generation_config.json (then qwen-tts's defaults). `do_sample` None follows
    `EngineConfig.do_sample`. The `subtalker_*` fields drive the code predictor (the 15
    residual codebooks of every frame); `subtalker_repetition_penalty` is the batched
    backend's only (stock qwen-tts has none)."""

    do_sample: bool | None = None
    temperature: float | None = None
    top_k: int | None = None
    top_p: float | None = None
    repetition_penalty: float | None = None
    subtalker_do_sample: bool | None = None
    subtalker_temperature: float | None = None
    subtalker_top_k: int | None = None
    subtalker_top_p: float | None = None
    subtalker_repetition_penalty: float | None = None


class FinishReason(enum.StrEnum):
    """Why a synthesis stopped."""

    EOS = "eos"  # the model ended the utterance
    LENGTH = "length"  # the request's or the deployment's max_new_tokens cap
    BUDGET = "budget"  # the runaway guard (frames per text token): EOS was probably missed
    CANCELLED = "cancelled"


@dataclass(frozen=True)
class SynthesisResult:
    audio: np.ndarray  # float32 mono in [-1, 1]
    sample_rate: int
    frames: int  # codec frames generated (12.5 per second of audio)
    generation_seconds: float = 0.0
    extra: dict = field(default_factory=dict)
    finish_reason: FinishReason = FinishReason.EOS

    @property
    def duration_seconds(self) -> float:
        return len(self.audio) / self.sample_rate


class EngineOverloadedError(Exception):
    """Every slot of the step loop is busy and its wait queue is full (maps to 503 with
    Retry-After `retry_after_s`)."""

    def __init__(self, message: str, retry_after_s: int = 1):
        self.message = message
        self.retry_after_s = retry_after_s
        super().__init__(message)

    def __reduce__(self):  # keep the fields when the error crosses a Ray handle
        return (type(self), (self.message, self.retry_after_s))


class EngineError(Exception):
    """The engine failed for a reason that is not the caller's input (maps to 5xx)."""


class UnsupportedValueError(ValueError):
    """A request names a speaker/language/mode this checkpoint does not support (maps to 4xx).

    `param` is the request field, `allowed` the values the checkpoint supports.
    """

    def __init__(self, param: str, value: object, allowed: list[str] | tuple[str, ...], message: str | None = None):
        self.param = param
        self.value = value
        self.allowed = list(allowed)
        self.message = message or f"unsupported {param} {value!r}; allowed: {', '.join(self.allowed)}"
        super().__init__(self.message)

    def __reduce__(self):  # keep the fields when the error crosses a Ray handle
        return (type(self), (self.param, self.value, self.allowed, self.message))


class StreamChunking(BaseModel):
    """How a streaming synthesis cuts codec frames into PCM chunks (12.5 frames per second).

    The first chunk is small so audio leaves early; later chunks are larger (fewer decoder
    calls and messages). Every chunk is decoded with up to `left_context_frames` earlier
    frames in front of it (then their samples are dropped): the decoder is causal, so the
    concatenated chunks equal a whole-utterance decode (the package's own chunked decode
    uses 25 frames of context).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    first_chunk_frames: int = Field(1, ge=1, le=64, description="Frames in the first chunk (80 ms each)")
    chunk_frames: int = Field(6, ge=1, le=256, description="Frames in every later chunk")
    left_context_frames: int = Field(25, ge=0, le=300, description="Decoder left context per chunk")


@dataclass(frozen=True)
class AudioChunk:
    """One piece of a streaming synthesis, in order. The last one has `final=True` (its audio
    may be empty) and carries the totals."""

    audio: np.ndarray  # float32 mono in [-1, 1], may be empty only when final
    sample_rate: int
    index: int
    frames: int  # codec frames in this chunk
    final: bool = False
    total_frames: int = 0  # frames generated so far (all of them when final)
    input_tokens: int = 0  # text tokens of the request (set when final)
    generation_seconds: float = 0.0  # wall time since the stream started
    finish_reason: FinishReason | None = None  # set when final
    #: Text still arriving (`TTSEngine.astream_text`): characters of the input the model had
    #: read when this chunk's last frame was made (it reads ahead of what it speaks); the
    #: whole input's length on the final chunk. 0 for requests whose text came at once.
    text_chars: int = 0

    @property
    def duration_seconds(self) -> float:
        return len(self.audio) / self.sample_rate


class StreamCancelled(Exception):
    """Raised inside the model's forward hook to stop a generation whose consumer went away."""


class StepObserver:
    """Hooks for metrics of the batched step loop (the model server passes one; the engine
    stays Ray-free). Here, not in `step_loop`, so importing it does not import torch."""

    def on_step(self, batch_size: int, step_seconds: float) -> None: ...
    def on_admit(self, queue_wait_seconds: float) -> None: ...
    def on_occupancy(self, active: int, waiting: int) -> None: ...
    def on_chunk(self, margin_seconds: float, late: bool) -> None:
        """A stream's chunk left (codec thread): its listener's margin then (< 0: late)."""
    def on_refused(self, queue_wait_seconds: float) -> None:
        """A request was refused after waiting (admission by what can be kept)."""
