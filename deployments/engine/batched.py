"""The continuous-batching step loop: every request on one model advances one codec frame per
step, together.

One `StepLoop` per loaded checkpoint owns the talker and its code predictor on one thread.
Requests wait in a bounded queue and are admitted at step boundaries into static KV-cache
slots: their prompt (the dual-track text/codec prefill qwen-tts builds, for every model kind)
is computed into a free slot. Every step then runs, over all active slots at once:

1. the code predictor: its 2-position prefill (talker hidden + codebook-0 embedding) and 14
   more sub-steps, batched over the slots (all slots share the predictor's context length, so
   there is no padding there), giving the 15 residual codebooks of each slot's frame;
2. one talker forward on the sum of the frame's 16 code embeddings plus the slot's text
   conditioning (its next trailing text hidden, or tts_pad once the text is used up), exactly
   as qwen-tts's `Qwen3TTSTalkerForConditionalGeneration.forward` feeds it;
3. sampling of the next codebook-0 token per slot with the request's own settings (tensors
   per row: repetition penalty over the slot's earlier tokens, EOS suppression below
   max(2, min_frames), the top-1024 control ids suppressed, temperature, top-k, top-p) and
   the request's own random stream (per-slot `torch.Generator`: a seeded request samples the
   same whatever shares the batch).

A slot leaves on EOS, its frame cap (max_new_tokens - 1, as stock qwen-tts), its runaway
budget (frames per text token), or cancellation, and is free for the next step. The active
slots are kept packed in rows 0..n-1 (a leaving slot's row is filled by the last one), so the
batched cache reads are views, not gathers.

Streaming requests get PCM chunks as their frames arrive; the chunks due in a step are decoded
together (grouped by chunk length and decoder context), on a second thread, by the codec
decoder run with per-stream state (`codec.StatefulCodecDecoder`: each chunk decodes only its
new frames; the samples are the whole-utterance decode's up to float rounding), which was
measured 2x (1 stream) to 7x (16 streams) cheaper than re-decoding 25 frames of left context
per chunk (`StepLoop.stateful_codec = False` keeps that scheme, the reference backend's).
Non-streaming requests are decoded once, at the end, exactly as qwen-tts decodes them.

The layers are qwen-tts's own modules (their forward is called with a slot cache standing in
for HF's cache), so the arithmetic is the package's; the generation loop, cache and sampling
are ours. CUDA-graph capture is not done (no GPU was available to develop it); shapes inside a
step depend only on the number of active slots and the longest context.
"""

from __future__ import annotations

import collections
import logging
import math
import queue
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from deployments.engine.codec import CodecState, StatefulCodecDecoder
from deployments.engine.text_input import SettledTokens, TextInput, wrap
from deployments.engine.types import (
    AudioChunk,
    EngineConfig,
    EngineError,
    EngineOverloadedError,
    FinishReason,
    StepObserver,
    StreamCancelled,
    StreamChunking,
    SynthesisResult,
    UnsupportedValueError,
)

if TYPE_CHECKING:
    from deployments.engine.engine import _Prepared
    from deployments.engine.streaming import StreamStats

log = logging.getLogger(__name__)

Sink = Callable[[AudioChunk | BaseException], None]
_NEG_INF = float("-inf")


# ---------------------------------------------------------------------------- sampling
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


def frame_budget(config: EngineConfig, text_tokens: int, min_frames: int) -> int:
    """The runaway guard: frames a request may make before its text says it must be over."""
    budget = config.budget_floor_frames + math.ceil(config.max_frames_per_text_token * text_tokens)
    return max(budget, min_frames)


class _RowSampling:
    """The sampling settings of rows 0..n-1 for one vocabulary, shaped once per step (every
    predictor level and the talker reuse them): the host syncs (largest k, any top-p) happen
    here, not per sub-step."""

    def __init__(self, do_sample: torch.Tensor, temperature: torch.Tensor, top_k: torch.Tensor,
                 top_p: torch.Tensor, vocab: int, sampled_rows: list[bool]) -> None:
        self.do_sample = do_sample
        self.all_sampled = all(sampled_rows)
        self.temperature = temperature.unsqueeze(1)
        k = torch.where(top_k > 0, top_k.clamp(max=vocab), torch.full_like(top_k, vocab))
        self.kmax = int(k.max())
        self.kth = (k - 1).unsqueeze(1)
        self.top_p = top_p
        self.use_top_p = bool((top_p < 1.0).any())


def _sample_rows(scores: torch.Tensor, rs: _RowSampling, noise: torch.Tensor | None) -> torch.Tensor:
    """Next token per row of `scores` (B, V) with per-row settings, the arithmetic of HF's
    warpers (temperature, then top-k, then top-p, then softmax). Sampling uses exponential
    noise (B, V) drawn from each row's own generator: argmax(p / E) is a draw from p."""
    if noise is None:
        return scores.argmax(dim=-1)
    s = scores / rs.temperature
    kth = torch.topk(s, rs.kmax, dim=-1).values.gather(1, rs.kth)
    s = s.masked_fill(s < kth, _NEG_INF)
    if rs.use_top_p:
        top_p = rs.top_p
        sorted_logits, sorted_idx = torch.sort(s, descending=False)
        cum = sorted_logits.softmax(dim=-1).cumsum(dim=-1)
        remove_sorted = cum <= (1 - top_p).unsqueeze(1)
        remove_sorted[..., -1:] = False
        remove = remove_sorted.scatter(1, sorted_idx, remove_sorted) & (top_p < 1.0).unsqueeze(1)
        s = s.masked_fill(remove, _NEG_INF)
    sampled = (s.softmax(dim=-1) / noise).argmax(dim=-1)
    if rs.all_sampled:
        return sampled
    return torch.where(rs.do_sample, sampled, scores.argmax(dim=-1))


def _repetition_penalty(scores: torch.Tensor, seen: torch.Tensor, penalty: torch.Tensor) -> torch.Tensor:
    """HF's RepetitionPenaltyLogitsProcessor with a per-row penalty over the tokens in `seen`."""
    p = penalty.unsqueeze(1)
    penalized = torch.where(scores < 0, scores * p, scores / p)
    return torch.where(seen, penalized, scores)


# ---------------------------------------------------------------------------- lean layers
def _rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """`Qwen3TTSRMSNorm.forward`, op for op, without the module call (the float32 round trip
    is skipped when `x` already is float32: it is the identity there)."""
    if x.dtype == torch.float32:
        return weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps))
    dtype = x.dtype
    x = x.to(torch.float32)
    variance = x.pow(2).mean(-1, keepdim=True)
    x = x * torch.rsqrt(variance + eps)
    return weight * x.to(dtype)


def _signed_sin(sin: torch.Tensor) -> torch.Tensor:
    """`sin` with its first half negated: `rotate_half(x) * sin == x.roll(half, -1) *
    _signed_sin(sin)` exactly (the same products, the sign moved from one factor to the other)."""
    half = sin.shape[-1] // 2
    return torch.cat((-sin[..., :half], sin[..., half:]), dim=-1)


def _attention_function(module: torch.nn.Module) -> Callable:
    """The attention function qwen-tts's own attention module would call."""
    impl = getattr(module.config, "_attn_implementation", "sdpa") or "sdpa"
    if impl == "eager":
        from qwen_tts.core.models.modeling_qwen3_tts import eager_attention_forward

        return eager_attention_forward
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    return ALL_ATTENTION_FUNCTIONS[impl]


class _LeanDecoderLayer:
    """A qwen-tts decoder layer (the code predictor's `Qwen3TTSDecoderLayer` or the talker's
    `Qwen3TTSTalkerDecoderLayer`: same structure) called as plain tensor ops with the same
    arithmetic and the same attention function: the predictor runs 15 times per frame, and on
    small models the per-call overhead is most of the time. Fewer ops than the modules, same
    numbers: q/k/v in one matmul (the rows of the three weights stacked: each output column is
    the same dot product), q and k normalised and rotated in one tensor (per-head weights
    stacked), the rotation as `x * cos + roll(x) * signed_sin` (see `_signed_sin`), gate and up
    in one matmul."""

    def __init__(self, layer: torch.nn.Module, index: int) -> None:
        a = layer.self_attn
        self.index = index
        self.attn = a
        self.attend = _attention_function(a)
        self.head_dim = hd = a.head_dim
        self.half = hd // 2
        self.scaling = a.scaling
        self.sliding_window = getattr(a, "sliding_window", None)
        self.eps = layer.input_layernorm.variance_epsilon
        self.ln1, self.ln2 = layer.input_layernorm.weight, layer.post_attention_layernorm.weight
        self.nq = a.q_proj.weight.shape[0] // hd
        self.nk = a.k_proj.weight.shape[0] // hd
        with torch.no_grad():
            self.qkv_w = torch.cat((a.q_proj.weight, a.k_proj.weight, a.v_proj.weight))
            biases = (a.q_proj.bias, a.k_proj.bias, a.v_proj.bias)
            self.qkv_b = None if biases[0] is None else torch.cat(biases)
            self.qk_norm = torch.cat((a.q_norm.weight.expand(self.nq, hd),
                                      a.k_norm.weight.expand(self.nk, hd)))
            mlp = layer.mlp
            self.gate_up = torch.cat((mlp.gate_proj.weight, mlp.up_proj.weight))
        self.qk_v = [self.nq + self.nk, self.nk]
        self.q_k = [self.nq, self.nk]
        self.o = (a.o_proj.weight, a.o_proj.bias)
        self.down = mlp.down_proj.weight
        self.act = mlp.act_fn

    def __call__(self, h: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, cache: Any,
                 mask: torch.Tensor | None = None) -> torch.Tensor:
        """`sin` is `_signed_sin` of the rotary sine; cos/sin broadcast over (B, heads, T, hd)."""
        linear = torch.nn.functional.linear
        eps = self.eps
        x = _rms_norm(h, self.ln1, eps)
        y = linear(x, self.qkv_w, self.qkv_b).view(*x.shape[:-1], -1, self.head_dim)
        qk, v = y.split(self.qk_v, dim=-2)
        qk = _rms_norm(qk, self.qk_norm, eps).transpose(1, 2)
        qk = (qk * cos) + (qk.roll(self.half, -1) * sin)
        q, k = qk.split(self.q_k, dim=1)
        k, v = cache.update(k, v.transpose(1, 2), self.index)
        out, _ = self.attend(self.attn, q, k, v, mask, dropout=0.0, scaling=self.scaling,
                             sliding_window=self.sliding_window)
        out = out.reshape(*x.shape[:-1], -1).contiguous()
        h = h + linear(out, *self.o)
        gate, up = linear(_rms_norm(h, self.ln2, eps), self.gate_up).chunk(2, dim=-1)
        return h + linear(self.act(gate) * up, self.down)


# ---------------------------------------------------------------------------- KV caches
class _SlotCache:
    """The talker's static KV cache: (slots, kv_heads, max_context, head_dim) per layer.

    Stands in for HF's cache object: qwen-tts's attention calls `update(k, v, layer, kw)` and
    attends over what it returns. `prefill` and `decode` set where the next forward writes.
    """

    def __init__(self, layers: int, slots: int, heads: int, context: int, head_dim: int,
                 dtype: torch.dtype, device: str) -> None:
        shape = (slots, heads, context, head_dim)
        self.k = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(layers)]
        self.v = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(layers)]
        self._row = 0
        self._length = 0
        self._rows: torch.Tensor | None = None
        self._pos: torch.Tensor | None = None
        self._n = 0
        self._kv_len = 0

    def prefill(self, row: int, length: int) -> None:
        self._rows, self._row, self._length = None, row, length

    def decode(self, n: int, positions: torch.Tensor, kv_len: int) -> None:
        self._n, self._pos, self._kv_len = n, positions, kv_len
        self._rows = torch.arange(n, device=positions.device)

    def update(self, k: torch.Tensor, v: torch.Tensor, layer: int, _kw: Any = None):
        if self._rows is None:  # prefill of one slot, exact length
            r, t = self._row, self._length
            self.k[layer][r, :, :t] = k[0]
            self.v[layer][r, :, :t] = v[0]
            return self.k[layer][r:r + 1, :, :t], self.v[layer][r:r + 1, :, :t]
        self.k[layer][self._rows, :, self._pos] = k[:, :, 0]
        self.v[layer][self._rows, :, self._pos] = v[:, :, 0]
        return self.k[layer][:self._n, :, :self._kv_len], self.v[layer][:self._n, :, :self._kv_len]

    def move(self, src: int, dst: int, length: int) -> None:
        for buf in (*self.k, *self.v):
            buf[dst, :, :length] = buf[src, :, :length]

    def swap(self, a: int, b: int, length_a: int, length_b: int) -> None:
        for buf in (*self.k, *self.v):
            kept = buf[a, :, :length_a].clone()
            buf[a, :, :length_b] = buf[b, :, :length_b]
            buf[b, :, :length_a] = kept


class _StepCache:
    """The code predictor's cache for one frame (every slot at the same position)."""

    def __init__(self, layers: int, slots: int, heads: int, length: int, head_dim: int,
                 dtype: torch.dtype, device: str) -> None:
        shape = (slots, heads, length, head_dim)
        self.k = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(layers)]
        self.v = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(layers)]
        self._n = 0
        self._start = 0
        # (n, start, end) -> per layer (write k, write v, read k, read v): views of the
        # buffers, made once (a step makes the same 15 of them for its batch size)
        self._views: dict[tuple[int, int, int], list[tuple[torch.Tensor, ...]]] = {}

    def at(self, n: int, start: int) -> None:
        self._n, self._start = n, start

    def update(self, k: torch.Tensor, v: torch.Tensor, layer: int, _kw: Any = None):
        key = (self._n, self._start, self._start + k.shape[2])
        views = self._views.get(key)
        if views is None:
            n, a, b = key
            views = [(bk[:n, :, a:b], bv[:n, :, a:b], bk[:n, :, :b], bv[:n, :, :b])
                     for bk, bv in zip(self.k, self.v, strict=True)]
            self._views[key] = views
        wk, wv, rk, rv = views[layer]
        wk.copy_(k)
        wv.copy_(v)
        return rk, rv


# ---------------------------------------------------------------------------- jobs
class Job:
    """One request inside the loop. `sink` gets `AudioChunk`s (streaming) and, for every
    job, the final chunk or the error; `done` is set when it left the loop."""

    def __init__(self, prepared: _Prepared, *, chunking: StreamChunking | None,
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
        self.cancelled = threading.Event()
        self.done = threading.Event()
        self.result: SynthesisResult | None = None
        self.error: BaseException | None = None
        self.frames = 0
        self.queue_wait_s = 0.0
        self.tracked = False  # counted in StreamStats.active
        self._callbacks: list[Callable[[Job], None]] = []

    def cancel(self) -> None:
        self.cancelled.set()

    def add_done_callback(self, fn: Callable[[Job], None]) -> None:
        """`fn(job)` runs on the loop thread once the job is done (at once if it is)."""
        self._callbacks.append(fn)
        if self.done.is_set():
            fn(self)

    def _set_done(self) -> None:
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
class _Slot:
    """Per-row host state of an active job (the tensors live in the loop's row buffers)."""

    job: Job
    generator: torch.Generator | None
    trailing: torch.Tensor  # (N, D) text conditioning fed one per step, then tts_pad
    cap: int  # frames this job may make
    budget_bound: bool  # the cap is the runaway budget, not max_new_tokens
    min_frames: int
    prompt_len: int
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

    @property
    def waits_for_text(self) -> bool:
        """True while the next step would read text that has not arrived (or settled)."""
        return not self.text_closed and self.trailing.shape[0] <= self.job.frames + self.lookahead


@dataclass
class LoopStats:
    """What the loop did, for metrics (read from any thread)."""

    active: int = 0
    waiting: int = 0
    steps: int = 0
    last_batch_size: int = 0
    last_step_seconds: float = 0.0
    admitted: int = 0
    rejected: int = 0
    waiting_for_text: int = 0  # slots holding their cache until their text arrives
    retokenized: int = 0  # text inputs whose whole-text tokens differed from the settled ones


class LoopStreamRunner:
    """A streaming request in the step loop, shaped for `SynthesisStream` and
    `AsyncSynthesisStream` (start with a sink, cancel, join)."""

    def __init__(self, loop: StepLoop, prepared: _Prepared, chunking: StreamChunking,
                 sample_rate: int, text_input: TextInput | None = None) -> None:
        self._loop = loop
        self._job = Job(prepared, chunking=chunking, text_input=text_input)
        self.sample_rate = sample_rate

    @property
    def frames(self) -> int:
        return self._job.frames

    def start(self, sink: Sink) -> None:
        self._job.sink = sink
        self._loop.submit(self._job)

    def cancel(self) -> None:
        """Leave the loop at the end of the current step (non-blocking, idempotent)."""
        if not self._job.done.is_set():
            self._job.cancel()
            self._loop.wake()

    def join(self, timeout: float | None = None) -> bool:
        return self._job.done.wait(timeout)


# ---------------------------------------------------------------------------- the loop
class StepLoop:
    """See the module docstring. Thread-safe `submit`; everything else runs on the loop
    thread."""

    #: decode streams with the codec's own state (True) or behind left-context windows
    stateful_codec = True

    def __init__(self, tts: Any, config: EngineConfig, *, sample_rate: int,
                 samples_per_frame: int, stats: StreamStats,
                 observer: StepObserver | None = None) -> None:
        self._tts = tts
        self._config = config
        self._model = tts.model
        self._talker = tts.model.talker
        self._predictor = self._talker.code_predictor
        # chunk decoding: the codec decoder with its per-call constants made once (same
        # output), run with per-stream state (only new frames are decoded) unless
        # `stateful_codec` is off (then left-context windows, as the reference backend)
        self._decoder = StatefulCodecDecoder(tts.model.speech_tokenizer.model.decoder)
        self._sample_rate = sample_rate
        self._spf = samples_per_frame
        self._stats = stats
        self.observer = observer or StepObserver()
        self.loop_stats = LoopStats()
        tc = self._model.config.talker_config
        self._tc = tc
        self._groups = int(tc.num_code_groups)
        self._eos = int(tc.codec_eos_token_id)
        self._vocab = int(tc.vocab_size)
        self._cp_vocab = int(tc.code_predictor_config.vocab_size)
        p = next(self._talker.parameters())
        self._device, self._dtype = p.device, p.dtype
        self._slots = config.max_slots
        self._context = config.max_context_tokens
        t_attn = self._talker.model.layers[0].self_attn
        self._cache = _SlotCache(len(self._talker.model.layers), self._slots,
                                 int(tc.num_key_value_heads), self._context,
                                 int(t_attn.head_dim), self._dtype, str(self._device))
        cpc = tc.code_predictor_config
        c_attn = self._predictor.model.layers[0].self_attn
        self._pcache = _StepCache(len(self._predictor.model.layers), self._slots,
                                  int(cpc.num_key_value_heads), self._groups, int(c_attn.head_dim),
                                  self._dtype, str(self._device))
        pm = self._predictor.model
        self._p_layers = [_LeanDecoderLayer(layer, i) for i, layer in enumerate(pm.layers)]
        self._p_norm = pm.norm
        # rotary tables of the predictor's positions: the 2-position prefill at 0, then 2..15
        self._p_rope: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        with torch.inference_mode():
            probe = torch.zeros(1, 1, int(cpc.hidden_size), dtype=self._dtype, device=self._device)
            for start, q in [(0, 2), *((i, 1) for i in range(2, self._groups))]:
                ids = torch.arange(start, start + q, device=self._device).unsqueeze(0)
                cos, sin = pm.rotary_emb(probe, ids)
                self._p_rope[start] = (cos.unsqueeze(1), _signed_sin(sin).unsqueeze(1))
        self._init_talker_rope()
        suppress = torch.zeros(self._vocab, dtype=torch.bool, device=self._device)
        suppress[self._vocab - 1024:] = True
        suppress[self._eos] = False
        self._suppress = suppress
        self._eos_mask = torch.zeros_like(suppress)
        self._eos_mask[self._eos] = True
        # the predictor's heads and embeddings as weights (called as functions in the step)
        pred = self._predictor
        self._p_heads = [head.weight for head in pred.lm_head]
        self._p_embeds = [e.weight for e in pred.get_input_embeddings()]
        proj = pred.small_to_mtp_projection
        self._p_proj = None if isinstance(proj, torch.nn.Identity) else (proj.weight, proj.bias)
        with torch.inference_mode():
            ids = torch.tensor([[self._model.config.tts_bos_token_id,
                                 self._model.config.tts_eos_token_id,
                                 self._model.config.tts_pad_token_id]], device=self._device)
            self._tts_bos, self._tts_eos, self._tts_pad = self._text_embed(ids).chunk(3, dim=1)
        self._alloc_rows()
        self._rows: list[_Slot] = []
        self._waiting: collections.deque[Job] = collections.deque()
        self._cond = threading.Condition()
        self._closed = False
        self._kicked = False  # something changed that the loop has not looked at yet
        self._sleeping = False  # the loop thread waits for work
        wrapped = self._tokenize(wrap(""))
        self._template_head, self._template_tail = wrapped[:, :3], wrapped[:, 3:]
        # codec decoding and sinks run on their own thread, in submission order, so the next
        # step's generation overlaps this step's decoding (torch releases the GIL)
        self._audio: queue.Queue[Callable[[], None] | None] = queue.Queue()
        self._audio_thread = threading.Thread(target=self._audio_worker, name="qtts-codec",
                                              daemon=True)
        self._audio_thread.start()
        self._thread = threading.Thread(target=self._run, name="qtts-step-loop", daemon=True)
        self._thread.start()

    def _audio_worker(self) -> None:
        torch.set_grad_enabled(False)
        while True:
            task = self._audio.get()
            if task is None:
                return
            try:
                with torch.inference_mode():
                    task()
            except Exception:  # noqa: BLE001 - tasks fail their own jobs
                log.exception("codec task failed")

    def _alloc_rows(self) -> None:
        s, dev, d = self._slots, self._device, self._talker.config.hidden_size
        self._last_token = torch.zeros(s, dtype=torch.long, device=dev)
        self._past_hidden = torch.zeros(s, 1, d, dtype=self._dtype, device=dev)
        self._pos = torch.zeros(s, dtype=torch.long, device=dev)
        self._seen = torch.zeros(s, self._vocab, dtype=torch.bool, device=dev)
        f32 = {"dtype": torch.float32, "device": dev}
        self._t_sample = torch.zeros(s, dtype=torch.bool, device=dev)
        self._t_temp = torch.ones(s, **f32)
        self._t_topk = torch.zeros(s, dtype=torch.long, device=dev)
        self._t_topp = torch.ones(s, **f32)
        self._t_rep = torch.ones(s, **f32)
        self._c_sample = torch.zeros(s, dtype=torch.bool, device=dev)
        self._c_temp = torch.ones(s, **f32)
        self._c_topk = torch.zeros(s, dtype=torch.long, device=dev)
        self._c_topp = torch.ones(s, **f32)
        self._c_rep = torch.ones(s, **f32)
        self._row_tensors = [self._last_token, self._past_hidden, self._pos, self._seen,
                             self._t_sample, self._t_temp, self._t_topk, self._t_topp, self._t_rep,
                             self._c_sample, self._c_temp, self._c_topk, self._c_topp, self._c_rep]

    # ------------------------------------------------------------------ public (any thread)
    @property
    def capacity(self) -> int:
        return self._slots

    def submit(self, job: Job) -> None:
        """Queue `job`; raises EngineOverloadedError when every slot is busy and the wait
        queue is full (nothing is queued then)."""
        with self._cond:
            if self._closed:
                raise EngineError("the engine's step loop is closed")
            free = self._slots - len(self._rows)
            if len(self._waiting) >= free + self._config.max_waiting:
                self.loop_stats.rejected += 1
                raise EngineOverloadedError(
                    f"all {self._slots} synthesis slots are busy and "
                    f"{len(self._waiting)} requests are waiting", self._config.retry_after_s)
            self._waiting.append(job)
            self.loop_stats.waiting = len(self._waiting)
            self._kicked = True
            self._cond.notify()
        if job.text_input is not None:
            job.text_input.add_listener(self.wake)

    @property
    def idle(self) -> bool:
        """True while the loop has looked at every change and no slot can step (there are
        none, or all wait for text): what tests wait for between text deltas."""
        with self._cond:
            return self._sleeping and not self._kicked

    def wake(self) -> None:
        """Make the loop look at cancellations and arrived text now."""
        with self._cond:
            self._kicked = True
            self._cond.notify()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify()
        self._thread.join(5)
        self._audio.put(None)
        self._audio_thread.join(5)

    # ------------------------------------------------------------------ the loop thread
    def _run(self) -> None:
        torch.set_grad_enabled(False)
        while True:
            with self._cond:
                while not self._closed and not self._kicked and not self._any_runnable():
                    self._sleeping = True
                    self._cond.wait()
                    self._sleeping = False
                if self._closed:
                    break
                self._kicked = False
                candidates = list(self._waiting)
            try:
                with torch.inference_mode():
                    admitting = self._admissible(candidates)
                    for job in admitting:
                        try:
                            self._admit(job)
                        except Exception as exc:  # noqa: BLE001 - fails this request only
                            log.exception("admission failure")
                            if self._rows and self._rows[-1].job is job:
                                self._rows.pop()
                            err = EngineError(f"batched prefill failed: {type(exc).__name__}: {exc}")
                            err.__cause__ = exc
                            self._fail(job, err)
                    self._refresh_text()
                    stepping = self._partition()
                    if stepping:
                        self._step(stepping)
            except Exception as exc:  # noqa: BLE001 - a failed step fails its jobs, not the loop
                log.exception("step loop failure")
                err = EngineError(f"batched generation failed: {type(exc).__name__}: {exc}")
                err.__cause__ = exc
                for slot in self._rows:
                    self._fail(slot.job, err)
                self._rows.clear()
            self.loop_stats.active = len(self._rows)
            self.loop_stats.waiting_for_text = sum(s.waits_for_text for s in self._rows)
            self.observer.on_occupancy(len(self._rows), self.loop_stats.waiting)
        err = EngineError("the engine was shut down")
        for slot in self._rows:
            self._fail(slot.job, err)
        for job in self._waiting:
            self._fail(job, err)

    def _any_runnable(self) -> bool:
        return any(not s.waits_for_text for s in self._rows)

    def _admissible(self, candidates: list[Job]) -> list[Job]:
        """The waiting jobs that go into free slots now, in order, taken off the queue: a job
        whose text is still arriving goes in once its prompt's text has settled (a cancelled
        one goes in to be failed)."""
        free = self._slots - len(self._rows)
        chosen = []
        for job in candidates:
            if len(chosen) >= free:
                break
            if job.text_input is None or job.cancelled.is_set() or self._prompt_ready(job):
                chosen.append(job)
        if chosen:
            with self._cond:
                for job in chosen:
                    self._waiting.remove(job)
                self.loop_stats.waiting = len(self._waiting)
        return chosen

    def _prompt_ready(self, job: Job) -> bool:
        """Settle the job's text so far; True once the prompt has all the text it holds
        (the first token; with an ICL voice prompt, as many as fill the reference's codes)."""
        text, closed, version = job.text_input.snapshot()
        if job.settled is None:
            job.settled = SettledTokens(self._tts.processor.tokenizer)
            vp = job.prepared.voice_prompt
            if vp is not None and vp.icl_mode:
                codec_lens = int(np.asarray(vp.ref_code).shape[0]) + 1
                job.prompt_tokens = max(1, codec_lens - len(self._ref_ids(vp.ref_text)))
        if closed:
            return True
        if version != job.text_version:  # nothing new: no tokenizing at every step
            job.text_version = version
            job.settled.update(text)
        return len(job.settled.ids) >= job.prompt_tokens

    def _ref_ids(self, ref_text: str) -> list[int]:
        ids = self._tokenize(f"<|im_start|>assistant\n{ref_text}<|im_end|>\n")
        return [int(i) for i in ids[0, 3:-2]]

    def _partition(self) -> int:
        """Put the slots that can step now in rows 0..k-1 (those waiting for text after
        them: the step reads rows 0..k-1 as views) and return k. A cancelled slot that is
        waiting for text leaves here (it will not step again)."""
        for i in range(len(self._rows) - 1, -1, -1):
            s = self._rows[i]
            if s.waits_for_text and s.job.cancelled.is_set():
                self._audio.put(lambda s=s: self._finish(s, FinishReason.CANCELLED))
                self._release(i)
        ready = [not s.waits_for_text for s in self._rows]
        i, j = 0, len(ready) - 1
        while True:
            while i <= j and ready[i]:
                i += 1
            while i <= j and not ready[j]:
                j -= 1
            if i >= j:
                return i
            self._swap(i, j)
            ready[i], ready[j] = True, False

    def _refresh_text(self) -> None:
        """Bring the trailing rows of every slot whose text is still arriving up to date:
        newly settled tokens are embedded and appended; on close, tts_eos goes after them and
        the whole text's tokenization replaces the settled one where it differs and has not
        been read yet."""
        for s in self._rows:
            ti = s.job.text_input
            if ti is None or s.text_closed:
                continue
            text, closed, version = ti.snapshot()
            if version == s.job.text_version:
                continue
            s.job.text_version = version
            settled = s.job.settled
            if closed:
                if not settled.close(text):
                    self.loop_stats.retokenized += 1
                    log.info("a streamed text tokenized differently as a whole; the unread rest follows the whole text")
            elif not settled.update(text):
                continue
            ids = (s.ref_ids + settled.ids)[s.skip:]
            keep = 0
            for old, new in zip(s.trailing_ids, ids, strict=False):
                if old != new:
                    break
                keep += 1
            keep = max(keep, min(s.job.frames, len(s.trailing_ids)))  # read rows stay
            rows = [s.trailing[:keep]]
            if len(ids) > keep:
                new_ids = torch.tensor([ids[keep:]], dtype=torch.long, device=self._device)
                rows.append(self._text_embed(new_ids)[0])
            if closed:
                rows.append(self._tts_eos[0])
            s.trailing = torch.cat(rows)
            s.trailing_ids = s.trailing_ids[:keep] + ids[keep:]
            s.text_closed = closed
            s.text_tokens = len(settled.ids)
            s.cap = min(s.length_cap, frame_budget(self._config, s.text_tokens, s.job.prepared.min_frames),
                        s.room)
            s.budget_bound = s.cap < s.length_cap

    def _read_chars(self, s: _Slot) -> int:
        """Characters of a slot's arriving text the model has read (0 for whole-text jobs)."""
        if s.job.settled is None:
            return 0
        return s.job.settled.read_chars(s.skip - len(s.ref_ids) + s.job.frames)

    def _swap(self, a: int, b: int) -> None:
        self._cache.swap(a, b, int(self._pos[a]), int(self._pos[b]))
        for t in self._row_tensors:
            t[[a, b]] = t[[b, a]]
        self._rows[a], self._rows[b] = self._rows[b], self._rows[a]

    # ------------------------------------------------------------------ admission
    def _text_embed(self, ids: torch.Tensor) -> torch.Tensor:
        return self._talker.text_projection(self._talker.get_text_embeddings()(ids))

    def _codec_embed(self, ids: list[int] | torch.Tensor) -> torch.Tensor:
        t = ids if isinstance(ids, torch.Tensor) else torch.tensor([ids], device=self._device)
        return self._talker.get_input_embeddings()(t)

    def _tokenize(self, text: str) -> torch.Tensor:
        ids = self._tts.processor(text=text, return_tensors="pt", padding=True)["input_ids"]
        ids = ids.to(self._device)
        return ids.unsqueeze(0) if ids.dim() == 1 else ids

    def _prompt(self, p: _Prepared, non_streaming_mode: bool, input_id: torch.Tensor | None = None,
                closed: bool = True) -> tuple[torch.Tensor, torch.Tensor, int]:
        """(prefill embeds (1, T, D), trailing text hiddens (N, D), text tokens): the inputs
        `Qwen3TTSForConditionalGeneration.generate` builds for one request. `input_id`: the
        wrapped text's ids when they are not `p.text`'s; `closed=False` (streaming-text mode
        only): more text will come, so the trailing rows do not end with tts_eos yet."""
        tc = self._tc
        if input_id is None:
            input_id = self._tokenize(wrap(p.text))
        parts: list[torch.Tensor] = []
        if p.instruct:
            instruct_id = self._tokenize(f"<|im_start|>user\n{p.instruct}<|im_end|>\n")
            parts.append(self._text_embed(instruct_id))
        vp = p.voice_prompt
        speaker_embed = None
        if vp is not None:
            speaker_embed = torch.as_tensor(np.asarray(vp.ref_spk_embedding, dtype=np.float32)).to(
                device=self._device, dtype=self._dtype)
        elif p.speaker:
            speaker_embed = self._codec_embed(torch.tensor(tc.spk_id[p.speaker], device=self._device))
        language_id = None if p.language == "auto" else tc.codec_language_id[p.language]
        if p.language in ("chinese", "auto") and p.speaker and tc.spk_is_dialect[p.speaker] is not False:
            language_id = tc.codec_language_id[tc.spk_is_dialect[p.speaker]]
        if language_id is None:
            prefix_ids = [tc.codec_nothink_id, tc.codec_think_bos_id, tc.codec_think_eos_id]
        else:
            prefix_ids = [tc.codec_think_id, tc.codec_think_bos_id, language_id, tc.codec_think_eos_id]
        codec0 = self._codec_embed(prefix_ids)
        codec1 = self._codec_embed([tc.codec_pad_id, tc.codec_bos_id])
        if speaker_embed is None:
            codec = torch.cat([codec0, codec1], dim=1)
        else:
            codec = torch.cat([codec0, speaker_embed.view(1, 1, -1), codec1], dim=1)
        role = self._text_embed(input_id[:, :3])
        pad, bos, eos = self._tts_pad, self._tts_bos, self._tts_eos
        body = torch.cat((pad.expand(-1, codec.shape[1] - 2, -1), bos), dim=1) + codec[:, :-1]
        embed = torch.cat((role, body), dim=1)
        text_tokens = int(input_id.shape[1]) - 8
        if vp is not None and vp.icl_mode:
            ref_id = self._tokenize(f"<|im_start|>assistant\n{vp.ref_text}<|im_end|>\n")
            ref_code = torch.as_tensor(np.asarray(vp.ref_code, dtype=np.int64), device=self._device)
            icl, trailing = self._icl_prompt(input_id[:, 3:-5], ref_id[:, 3:-2], ref_code,
                                             non_streaming_mode, closed)
            embed = torch.cat([embed, icl], dim=1)
        else:
            first = self._text_embed(input_id[:, 3:4]) + codec[:, -1:]
            embed = torch.cat([embed, first], dim=1)
            if non_streaming_mode:
                embed = embed[:, :-1]
                text = input_id[:, 3:-5]
                embed = torch.cat([
                    embed,
                    torch.cat((self._text_embed(text), eos), dim=1)
                    + self._codec_embed([tc.codec_pad_id] * (text.shape[1] + 1)),
                    pad + self._codec_embed([tc.codec_bos_id]),
                ], dim=1)
                trailing = pad
            else:
                trailing = self._text_embed(input_id[:, 4:-5])
                if closed:
                    trailing = torch.cat((trailing, eos), dim=1)
        parts.append(embed)
        return torch.cat(parts, dim=1), trailing[0], text_tokens

    def _icl_prompt(self, text_id: torch.Tensor, ref_id: torch.Tensor, ref_code: torch.Tensor,
                    non_streaming_mode: bool, closed: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        """`generate_icl_prompt`: reference text + target text beside the reference codes.
        Open text (`closed=False`) has filled the reference's codes already (`_prompt_ready`)."""
        tc = self._tc
        text_embed = self._text_embed(torch.cat([ref_id, text_id], dim=-1))
        if closed:
            text_embed = torch.cat([text_embed, self._tts_eos], dim=1)
        codec_embed = [self._codec_embed(ref_code[:, :1])]
        for i in range(1, self._groups):
            codec_embed.append(self._predictor.get_input_embeddings()[i - 1](ref_code[:, i:i + 1]))
        codec_embed = torch.cat(codec_embed, dim=1).sum(1).unsqueeze(0)
        codec_embed = torch.cat([self._codec_embed([tc.codec_bos_id]), codec_embed], dim=1)
        text_lens, codec_lens = text_embed.shape[1], codec_embed.shape[1]
        pad = self._tts_pad
        if non_streaming_mode:
            icl = text_embed + self._codec_embed([tc.codec_pad_id] * text_lens)
            return torch.cat([icl, codec_embed + pad], dim=1), pad
        if text_lens > codec_lens or not closed:
            return text_embed[:, :codec_lens] + codec_embed, text_embed[:, codec_lens:]
        text_embed = torch.cat([text_embed] + [pad] * (codec_lens - text_lens), dim=1)
        return text_embed + codec_embed, pad

    def _admit(self, job: Job) -> None:
        p = job.prepared
        job.started_at = time.perf_counter()
        job.queue_wait_s = job.started_at - job.submitted_at
        self.observer.on_admit(job.queue_wait_s)
        if job.cancelled.is_set():
            self._fail(job, StreamCancelled())
            return
        arriving = job.text_input is not None
        if arriving:
            text, closed, version = job.text_input.snapshot()
            if closed and not text.strip():
                self._fail(job, UnsupportedValueError("text", text, [], "text must not be empty"))
                return
            if closed:
                job.settled.close(text)
            ids = torch.tensor([job.settled.ids], dtype=torch.long, device=self._device)
            input_id = torch.cat((self._template_head, ids, self._template_tail), dim=1)
        else:
            input_id, closed = None, True
        try:
            embed, trailing, text_tokens = self._prompt(p, p.non_streaming_mode, input_id, closed)
        except Exception as exc:  # noqa: BLE001
            self._fail(job, EngineError(f"prompt failed: {type(exc).__name__}: {exc}"))
            return
        t = int(embed.shape[1])
        room = self._context - t
        if room < 1:
            self._fail(job, UnsupportedValueError(
                "text", f"{t} prompt tokens", [],
                f"the prompt is too long for this deployment ({t} tokens; "
                f"max_context_tokens is {self._context})"))
            return
        length_cap = p.max_new_tokens - 1  # stock qwen-tts makes at most max_new_tokens - 1
        budget = frame_budget(self._config, text_tokens, p.min_frames)
        cap = min(length_cap, budget, room)
        row = len(self._rows)
        s = p.sampling
        gen = None
        if s.do_sample or s.subtalker_do_sample:
            gen = torch.Generator(device=self._device)
            gen.manual_seed(p.seed if p.seed is not None else random.getrandbits(63))
        slot = _Slot(job=job, generator=gen, trailing=trailing, cap=cap,
                     budget_bound=cap < length_cap, min_frames=max(2, p.min_frames),
                     prompt_len=t, text_tokens=text_tokens)
        if p.voice_prompt is not None and p.voice_prompt.icl_mode:
            slot.prefix = torch.as_tensor(np.asarray(p.voice_prompt.ref_code, dtype=np.int64))
        if arriving:
            slot.length_cap, slot.room, slot.lookahead = length_cap, room, self._config.text_lookahead_tokens
            job.text_version, slot.text_closed = version, closed
            if slot.prefix is not None:
                slot.ref_ids = self._ref_ids(p.voice_prompt.ref_text)
                slot.skip = int(slot.prefix.shape[0]) + 1  # the codec rows the prompt fills
            else:
                slot.skip = 1  # the first text token is in the prompt
            slot.trailing_ids = (slot.ref_ids + job.settled.ids)[slot.skip:]
        self._last_token[row] = 0
        self._seen[row] = False
        self._t_sample[row], self._t_temp[row] = s.do_sample, s.temperature
        self._t_topk[row], self._t_topp[row], self._t_rep[row] = s.top_k, s.top_p, s.repetition_penalty
        self._c_sample[row], self._c_temp[row] = s.subtalker_do_sample, s.subtalker_temperature
        self._c_topk[row], self._c_topp[row] = s.subtalker_top_k, s.subtalker_top_p
        self._c_rep[row] = s.subtalker_repetition_penalty
        # prefill into the slot: positions 0..t-1, exactly as the talker's first forward
        self._cache.prefill(row, t)
        hidden = self._talker_layers(embed, torch.arange(t, device=self._device), None, prefill=True)
        logits = self._talker.codec_head(hidden)[:, -1, :]
        self._rows.append(slot)
        self._past_hidden[row] = hidden[0, -1:]
        self._pos[row] = t
        token = self._talker_sample(logits, slice(row, row + 1), [slot], new_tokens=[0])
        self._last_token[row] = token[0]
        self._seen[row, token[0]] = True
        self.loop_stats.admitted += 1
        if job.chunking is not None:
            self._stats.streams_started += 1
            self._stats.active += 1
            job.tracked = True

    # ------------------------------------------------------------------ model pieces
    def _init_talker_rope(self) -> None:
        """The talker's rotary tables for every cache position, computed once by its own
        rotary module (each entry is one product inv_freq * position, so a table row equals
        what the module gives for that position) and combined per M-RoPE section as
        `apply_multimodal_rotary_pos_emb` does; the talker then runs as lean layers. The
        interleaved M-RoPE layout and non-default rope types keep the module path."""
        m = self._talker.model
        rs = getattr(self._tc, "rope_scaling", None) or {}
        self._t_layers: list[_LeanDecoderLayer] | None = None
        if rs.get("interleaved") or rs.get("rope_type", "default") != "default" or "mrope_section" not in rs:
            return
        with torch.inference_mode():
            probe = torch.zeros(1, 1, 1, dtype=self._dtype, device=self._device)
            ids = torch.arange(self._context, device=self._device, dtype=torch.float32)
            cos, sin = m.rotary_emb(probe, ids.view(1, 1, -1).expand(3, 1, -1))
            section = list(rs["mrope_section"]) * 2
            cos = torch.cat([c[i % 3] for i, c in enumerate(cos.split(section, dim=-1))], dim=-1)
            sin = torch.cat([c[i % 3] for i, c in enumerate(sin.split(section, dim=-1))], dim=-1)
        self._t_cos, self._t_sin = cos[0], _signed_sin(sin[0])  # (context, head_dim)
        self._t_layers = [_LeanDecoderLayer(layer, i) for i, layer in enumerate(m.layers)]
        self._t_norm = m.norm

    def _talker_layers(self, embeds: torch.Tensor, positions: torch.Tensor,
                       mask: torch.Tensor | None, *, prefill: bool) -> torch.Tensor:
        """The talker's decoder over `embeds` (B, T, D) at `positions`: (T,) for one slot's
        prefill, (B,) for a decode step (one position per row)."""
        if self._t_layers is None:
            m = self._talker.model
            ids = positions.to(torch.float32)
            ids = ids.view(1, 1, -1) if prefill else ids.view(1, -1, 1)
            ids = ids.expand(3, *ids.shape[1:])
            cos_sin = m.rotary_emb(embeds, ids)
            h = embeds
            for layer in m.layers:
                h = layer(h, attention_mask=mask, position_ids=ids[0],
                          past_key_values=self._cache, position_embeddings=cos_sin)[0]
            return m.norm(h)
        hd = self._t_cos.shape[-1]
        shape = (1, 1, -1, hd) if prefill else (-1, 1, 1, hd)
        cos, sin = self._t_cos[positions].view(shape), self._t_sin[positions].view(shape)
        h = embeds
        for layer in self._t_layers:
            h = layer(h, cos, sin, self._cache, mask)
        return _rms_norm(h, self._t_norm.weight, self._t_norm.variance_epsilon)

    def _project(self, x: torch.Tensor) -> torch.Tensor:
        """The predictor's `small_to_mtp_projection` (identity when the sizes match)."""
        return x if self._p_proj is None else torch.nn.functional.linear(x, *self._p_proj)

    def _predictor_layers(self, embeds: torch.Tensor, start: int) -> torch.Tensor:
        n = embeds.shape[0]
        self._pcache.at(n, start)
        cos, sin = self._p_rope[start]
        h = embeds
        for layer in self._p_layers:
            h = layer(h, cos, sin, self._pcache)
        return _rms_norm(h, self._p_norm.weight, self._p_norm.variance_epsilon)

    def _noise(self, slots: list[_Slot], levels: int, vocab: int) -> torch.Tensor | None:
        """Exponential noise (B, levels, vocab) from each slot's own generator (ones for
        greedy slots): the random stream of a request does not depend on its neighbours."""
        if all(s.generator is None for s in slots):
            return None
        rows = []
        for s in slots:
            if s.generator is None:
                rows.append(torch.ones(levels, vocab, device=self._device))
            else:
                e = torch.empty(levels, vocab, device=self._device).exponential_(generator=s.generator)
                rows.append(e.clamp_min_(1e-30))
        return torch.stack(rows)

    def _talker_sample(self, logits: torch.Tensor, rows: slice, slots: list[_Slot],
                       new_tokens: list[int], noise: torch.Tensor | None = None) -> torch.Tensor:
        scores = logits.float() if logits.dtype != torch.float32 else logits
        scores = _repetition_penalty(scores, self._seen[rows], self._t_rep[rows])
        below = torch.tensor([k < s.min_frames for k, s in zip(new_tokens, slots, strict=True)],
                             device=self._device)
        scores = torch.where(below.unsqueeze(1) & self._eos_mask, _NEG_INF, scores)
        scores = torch.where(self._suppress, _NEG_INF, scores)
        if noise is None and any(s.generator is not None for s in slots):
            noise = self._noise(slots, 1, self._vocab)[:, 0]
        if noise is None:
            return scores.argmax(dim=-1)
        rs = _RowSampling(self._t_sample[rows], self._t_temp[rows], self._t_topk[rows],
                          self._t_topp[rows], self._vocab,
                          [s.job.prepared.sampling.do_sample for s in slots])
        return _sample_rows(scores, rs, noise)

    # ------------------------------------------------------------------ one step
    def _step(self, n: int) -> None:
        """One frame for the slots in rows 0..n-1."""
        t0 = time.perf_counter()
        slots = self._rows[:n]
        rows = slice(0, n)
        sampled = [s.generator is not None for s in slots]
        c_noise = self._noise(slots, self._groups - 1, self._cp_vocab) if any(sampled) else None
        # 1. the code predictor: 15 residual codebooks for every slot's pending token
        last = self._last_token[:n]
        last_hidden = self._codec_embed(last.unsqueeze(1))  # (n, 1, D)
        inp = torch.cat((self._past_hidden[:n], last_hidden), dim=1)
        embeds = self._project(inp)
        codes = []
        penalize = any(sl.job.prepared.sampling.subtalker_repetition_penalty != 1.0 for sl in slots)
        seen = torch.zeros(n, self._cp_vocab, dtype=torch.bool, device=self._device) if penalize else None
        rs = None
        if c_noise is not None:
            rs = _RowSampling(self._c_sample[rows], self._c_temp[rows], self._c_topk[rows],
                              self._c_topp[rows], self._cp_vocab,
                              [sl.job.prepared.sampling.subtalker_do_sample for sl in slots])
        linear, embedding = torch.nn.functional.linear, torch.nn.functional.embedding
        for level in range(self._groups - 1):
            h = self._predictor_layers(embeds, 0 if level == 0 else level + 1)
            scores = linear(h, self._p_heads[level])[:, -1, :]
            scores = scores.float() if scores.dtype != torch.float32 else scores
            if penalize:
                scores = _repetition_penalty(scores, seen, self._c_rep[rows])
            if rs is None:
                code = scores.argmax(dim=-1)
            else:
                code = _sample_rows(scores, rs, c_noise[:, level])
            codes.append(code)
            if penalize:
                seen[torch.arange(n, device=self._device), code] = True
            if level < self._groups - 2:
                embeds = self._project(embedding(code.unsqueeze(1), self._p_embeds[level]))
        frame = torch.cat([last.unsqueeze(1), torch.stack(codes, dim=1)], dim=1)  # (n, 16)
        # 2. the talker: sum of the 16 code embeddings + this step's text conditioning
        hiddens = [last_hidden] + [embedding(frame[:, i + 1:i + 2], self._p_embeds[i])
                                   for i in range(self._groups - 1)]
        step_in = torch.cat(hiddens, dim=1).sum(1, keepdim=True)
        text = []
        for s in slots:
            g = s.job.frames  # generation_step of qwen-tts = frames made before this one
            text.append(s.trailing[g] if g < s.trailing.shape[0] else self._tts_pad[0, 0])
        step_in = step_in + torch.stack(text).unsqueeze(1)
        pos = self._pos[:n]
        kv_len = int(pos.max()) + 1
        mask = None
        if n > 1 and int(pos.min()) + 1 != kv_len:
            mask = (torch.arange(kv_len, device=self._device).unsqueeze(0)
                    <= pos.unsqueeze(1)).view(n, 1, 1, kv_len)
        self._cache.decode(n, pos, kv_len)
        hidden = self._talker_layers(step_in, pos, mask, prefill=False)
        logits = self._talker.codec_head(hidden)[:, -1, :]
        new_tokens = [s.job.frames + 1 for s in slots]
        t_noise = self._noise(slots, 1, self._vocab)[:, 0] if any(sampled) else None
        token = self._talker_sample(logits, rows, slots, new_tokens, t_noise)
        self._past_hidden[:n] = hidden[:, -1:]
        self._pos[:n] += 1
        self._last_token[:n] = token
        self._seen[torch.arange(n, device=self._device), token] = True
        # 3. host side: frames to jobs, who is done
        frame_host = frame.cpu()
        token_host = token.tolist()
        finished: list[tuple[int, FinishReason]] = []
        for i, s in enumerate(slots):
            s.peak_batch = max(s.peak_batch, n)
            s.codes.append(frame_host[i])
            s.job.frames += 1
            if s.job.chunking is not None:
                self._stats.frames_generated += 1
            if s.job.cancelled.is_set():
                finished.append((i, FinishReason.CANCELLED))
            elif token_host[i] == self._eos:
                finished.append((i, FinishReason.EOS))
            elif s.job.frames >= s.cap:
                finished.append((i, FinishReason.BUDGET if s.budget_bound else FinishReason.LENGTH))
        for i, _ in finished:  # arriving text: what it had read (all of it, or a cap ended it)
            slots[i].final_chars = self._read_chars(slots[i])
        done = {i: r for i, r in finished}
        due = self._due_chunks(slots, done)
        leaving = [(slots[i], done[i]) for i in sorted(done)]
        if due or leaving:
            self._audio.put(lambda: self._deliver(due, leaving))
        for i in sorted(done, reverse=True):
            self._release(i)
        st = self.loop_stats
        st.steps += 1
        st.last_batch_size = n
        st.last_step_seconds = time.perf_counter() - t0
        self.observer.on_step(n, st.last_step_seconds)

    def _release(self, row: int) -> None:
        """Free `row`: the last active row moves into it, so rows stay packed."""
        last = len(self._rows) - 1
        if row != last:
            self._cache.move(last, row, int(self._pos[last]))
            for t in self._row_tensors:
                t[row] = t[last]
            self._rows[row] = self._rows[last]
        self._rows.pop()

    # ------------------------------------------------------------------ audio out
    def _due_chunks(self, slots: list[_Slot], done: dict[int, FinishReason]) -> list:
        """The chunk windows due this step (loop thread: reads the codes, marks them taken)."""
        due: list[tuple[_Slot, torch.Tensor, int, bool, int]] = []
        for i, s in enumerate(slots):
            ch = s.job.chunking
            if ch is None or done.get(i) is FinishReason.CANCELLED:
                continue
            pending = len(s.codes) - s.emitted
            want = ch.first_chunk_frames if s.chunks_due == 0 else ch.chunk_frames
            if pending >= want or (i in done and pending > 0):
                history = s.codes if s.prefix is None else [*s.prefix, *s.codes]
                offset = len(history) - len(s.codes)
                start = offset + s.emitted
                if self.stateful_codec:  # new frames only (an ICL prefix goes in first)
                    ctx = offset if s.emitted == 0 else 0
                else:
                    ctx = min(ch.left_context_frames, start)
                window = torch.stack(history[start - ctx:], dim=0)
                due.append((s, window, ctx, i in done, self._read_chars(s)))
                s.emitted = len(s.codes)
                s.chunks_due += 1
        return due

    def _deliver(self, due: list, leaving: list[tuple[_Slot, FinishReason]]) -> None:
        """Codec thread: decode the due chunks batched by window length, emit them, then
        finish the jobs that left the loop this step."""
        groups: dict[tuple[int, int], list[tuple[_Slot, torch.Tensor, int, bool, int]]] = {}
        for d in due:
            s = d[0]
            if self.stateful_codec and s.codec is None:
                s.codec = self._decoder.new_state()
            context = s.codec.context.shape[1] if s.codec is not None else 0
            groups.setdefault((d[1].shape[0], context), []).append(d)
        for items in groups.values():
            batch = torch.stack([torch.clamp(d[1], min=0).T for d in items]).to(self._device)
            try:
                if self.stateful_codec:
                    wav = self._decoder.step(batch, [d[0].codec for d in items])
                else:
                    wav = self._decoder(batch)
                wav = wav.to(torch.float32).cpu().numpy()
            except Exception as exc:  # noqa: BLE001
                for s, *_ in items:
                    s.job.cancel()
                    self._fail(s.job, EngineError(f"codec decode failed: {type(exc).__name__}: {exc}"))
                continue
            for j, (s, window, ctx, final, chars) in enumerate(items):
                audio = wav[j, 0, ctx * self._spf:window.shape[0] * self._spf]
                if final:  # the tail goes out with the final chunk
                    s.tail = audio
                else:
                    try:
                        self._emit(s, audio, final=False, chars=chars)
                    except Exception as exc:  # noqa: BLE001
                        s.job.cancel()
                        self._fail(s.job, exc)
        for s, reason in leaving:
            self._finish(s, reason)

    def _emit(self, s: _Slot, audio: np.ndarray, *, final: bool,
              reason: FinishReason | None = None, chars: int = 0) -> None:
        job = s.job
        if job.sink is None or job.done.is_set():
            return
        if not np.isfinite(audio).all():
            raise EngineError("model produced non-finite audio")
        job.sink(AudioChunk(
            audio=np.ascontiguousarray(audio, dtype=np.float32), sample_rate=self._sample_rate,
            index=s.chunks, frames=audio.size // self._spf, final=final, total_frames=job.frames,
            input_tokens=s.text_tokens if final else 0,
            generation_seconds=time.perf_counter() - job.submitted_at, finish_reason=reason,
            text_chars=chars,
        ))
        s.chunks += 1

    def _finish(self, s: _Slot, reason: FinishReason) -> None:
        job = s.job
        if job.done.is_set():
            return
        if reason is FinishReason.CANCELLED:
            self._fail(job, StreamCancelled())
            return
        try:
            if job.chunking is not None:
                tail = s.tail if s.tail is not None else np.zeros(0, np.float32)
                self._emit(s, tail, final=True, reason=reason, chars=s.final_chars)
                self._untrack(job)
            else:
                job.result = self._whole(s, reason)
        except Exception as exc:  # noqa: BLE001
            self._fail(job, exc if isinstance(exc, EngineError) else
                       EngineError(f"decode failed: {type(exc).__name__}: {exc}"))
            return
        job._set_done()

    def _whole(self, s: _Slot, reason: FinishReason) -> SynthesisResult:
        """Decode a finished non-streaming job as qwen-tts decodes its own output."""
        codes = torch.stack(s.codes).to(self._device)
        if s.prefix is not None:
            full = torch.cat([s.prefix.to(self._device), codes], dim=0)
        else:
            full = codes
        wavs, sr = self._model.speech_tokenizer.decode([{"audio_codes": full}])
        wav = wavs[0]
        if s.prefix is not None:
            cut = int(s.prefix.shape[0] / max(full.shape[0], 1) * wav.shape[0])
            wav = wav[cut:]
        audio = np.ascontiguousarray(np.asarray(wav, dtype=np.float32).reshape(-1))
        if s.prefix is not None:
            audio = audio[audio.size % self._spf:]
        if audio.size == 0 or not np.isfinite(audio).all():
            raise EngineError("model produced empty or non-finite audio")
        p = s.job.prepared
        return SynthesisResult(
            audio=audio, sample_rate=int(sr), frames=audio.size // self._spf,
            generation_seconds=time.perf_counter() - s.job.submitted_at,
            extra={"backend": "batched", "seed": p.seed, "max_new_tokens": p.max_new_tokens,
                   "codes": codes.cpu().numpy(), "batch_size": s.peak_batch,
                   "frame_cap": s.cap, "queue_wait_seconds": s.job.queue_wait_s,
                   "input_tokens": s.text_tokens},
            finish_reason=reason,
        )

    def _untrack(self, job: Job) -> None:
        if job.tracked:
            job.tracked = False
            self._stats.active -= 1

    def _fail(self, job: Job, exc: BaseException) -> None:
        if job.done.is_set():
            return
        if job.chunking is not None and isinstance(exc, StreamCancelled):
            self._stats.streams_cancelled += 1
        self._untrack(job)
        job.error = exc
        if job.sink is not None:
            job.sink(exc)
        job._set_done()
