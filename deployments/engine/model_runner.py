"""The model runner: the talker and its code predictor over static KV-cache slots, one step's
tensors, and nothing else (no requests, no queues, no audio).

State lives in device tensors with one entry per slot ("row"): the pending codebook-0 token,
the talker's last hidden state, the cache position, the frame counter, the tokens already
seen (repetition penalty), every sampling setting of both levels, the seed, min_frames, and
the trailing text rows the talker reads one per frame. The scheduler keeps the stepping rows
packed in 0..n-1; a step runs rows 0..B-1 where B is n rounded up to a rung of the batch
ladder (1, 2, 4, ... up to the slot count) and attends over the first C cache positions, C
the longest context rounded up to a rung of the context ladder. Rows n..B-1 are computed and
not committed (an `active` mask), so every tensor of a step has a shape fixed by (B, C): the
step can be compiled once per bucket (`engine.compile: compile`) or captured as a CUDA graph
(`cudagraphs`), and nothing inside it reads a value back to the host. The host reads one
tensor per step: the frames made and the next codebook-0 tokens, (B, 17), in one copy.

A step, over all rows at once:
1. the code predictor: its 2-position prefill (talker hidden + codebook-0 embedding) and 14
   more sub-steps, giving the 15 residual codebooks of each row's frame;
2. one talker forward on the sum of the frame's 16 code embeddings plus the row's text
   conditioning (its next trailing text row, or tts_pad once they are used up), exactly as
   qwen-tts's `Qwen3TTSTalkerForConditionalGeneration.forward` feeds it;
3. the next codebook-0 token per row: repetition penalty over the row's earlier tokens, EOS
   suppressed below max(2, min_frames), the top-1024 control ids suppressed, then greedy or
   sampled with the row's settings (`sampler`).
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable
from typing import Any, Literal

import torch

from deployments.engine.layers import LeanDecoderLayer, SlotCache, StepCache, rms_norm, signed_sin
from deployments.engine.request import ResolvedSampling
from deployments.engine.sampler import (
    RowSampling,
    counter_noise,
    repetition_penalty,
    sample_rows,
    split_seed,
)
from deployments.engine.types import EngineError

log = logging.getLogger(__name__)

_NEG_INF = float("-inf")
CompileMode = Literal["none", "compile", "cudagraphs"]


def ladder(limit: int, first: int = 1) -> list[int]:
    """Powers of two from `first` below `limit`, then `limit` itself: the bucket sizes."""
    rungs, r = [], first
    while r < limit:
        rungs.append(r)
        r *= 2
    return [*rungs, limit]


def bucket(value: int, rungs: list[int]) -> int:
    """The smallest rung >= value."""
    for r in rungs:
        if r >= value:
            return r
    raise ValueError(f"{value} is above the largest bucket {rungs[-1]}")


class ModelRunner:
    """See the module docstring. Loop thread only (the prompt builder's embeddings aside)."""

    def __init__(self, tts: Any, *, slots: int, context: int, compile_mode: CompileMode = "none",
                 min_context_bucket: int = 64, batch_buckets: tuple[int, ...] | None = None) -> None:
        model = tts.model
        self._talker = talker = model.talker
        self._predictor = pred = talker.code_predictor
        self._tc = tc = model.config.talker_config
        p = next(talker.parameters())
        self.device, self.dtype = p.device, p.dtype
        self.slots, self.context = slots, context
        self.groups = int(tc.num_code_groups)
        self.eos = int(tc.codec_eos_token_id)
        self.vocab = int(tc.vocab_size)
        self.cp_vocab = int(tc.code_predictor_config.vocab_size)
        self.batch_ladder = (ladder(slots) if not batch_buckets else
                             sorted({b for b in batch_buckets if b < slots} | {slots}))
        self.context_ladder = ladder(context, min(min_context_bucket, context))
        dev, dt = self.device, self.dtype
        t_attn = talker.model.layers[0].self_attn
        self.cache = SlotCache(len(talker.model.layers), slots, int(tc.num_key_value_heads),
                               context, int(t_attn.head_dim), dt, dev)
        cpc = tc.code_predictor_config
        c_attn = pred.model.layers[0].self_attn
        self._pcache = StepCache(len(pred.model.layers), slots, int(cpc.num_key_value_heads),
                                 self.groups, int(c_attn.head_dim), dt, dev)
        pm = pred.model
        self._p_layers = [LeanDecoderLayer(layer, i) for i, layer in enumerate(pm.layers)]
        self._p_norm = (pm.norm.weight, pm.norm.variance_epsilon)
        # rotary tables of the predictor's positions: the 2-position prefill at 0, then 2..15
        self._p_rope: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        with torch.inference_mode():
            probe = torch.zeros(1, 1, int(cpc.hidden_size), dtype=dt, device=dev)
            for start, q in [(0, 2), *((i, 1) for i in range(2, self.groups))]:
                ids = torch.arange(start, start + q, device=dev).unsqueeze(0)
                cos, sin = pm.rotary_emb(probe, ids)
                self._p_rope[start] = (cos.unsqueeze(1), signed_sin(sin).unsqueeze(1))
        self._init_talker_rope()
        suppress = torch.zeros(self.vocab, dtype=torch.bool, device=dev)
        suppress[self.vocab - 1024:] = True
        suppress[self.eos] = False
        self._suppress = suppress
        self._eos_mask = torch.zeros_like(suppress)
        self._eos_mask[self.eos] = True
        self._p_heads = [head.weight for head in pred.lm_head]
        self._p_embeds = [e.weight for e in pred.get_input_embeddings()]
        self._t_embed = talker.get_input_embeddings().weight
        self._codec_head = talker.codec_head
        proj = pred.small_to_mtp_projection
        self._p_proj = None if isinstance(proj, torch.nn.Identity) else (proj.weight, proj.bias)
        self._alloc_rows(int(talker.config.hidden_size))
        self.compile_mode = compile_mode
        #: torch.compile's backend in `compile` mode (tests use "aot_eager": the same captured,
        #: functionalized graph without inductor's C++ build)
        self.compile_backend = "inductor"
        self._steps: dict[tuple, Callable[[], torch.Tensor]] = {}
        self.compile_seconds: dict[str, float] = {}  # "B=..,C=..": first call (compile/capture)

    # ------------------------------------------------------------------ state
    def _alloc_rows(self, d: int) -> None:
        s, dev, dt = self.slots, self.device, self.dtype
        i64 = {"dtype": torch.long, "device": dev}
        f32 = {"dtype": torch.float32, "device": dev}
        self.last_token = torch.zeros(s, **i64)
        self.past_hidden = torch.zeros(s, 1, d, dtype=dt, device=dev)
        self.pos = torch.zeros(s, **i64)
        self.frames = torch.zeros(s, **i64)
        self.seen = torch.zeros(s, self.vocab, dtype=torch.bool, device=dev)
        self.min_frames = torch.zeros(s, **i64)
        self.seed_lo = torch.zeros(s, **i64)
        self.seed_hi = torch.zeros(s, **i64)
        self.t_sample = torch.zeros(s, dtype=torch.bool, device=dev)
        self.t_temp = torch.ones(s, **f32)
        self.t_topk = torch.zeros(s, **i64)
        self.t_topp = torch.ones(s, **f32)
        self.t_rep = torch.ones(s, **f32)
        self.c_sample = torch.zeros(s, dtype=torch.bool, device=dev)
        self.c_temp = torch.ones(s, **f32)
        self.c_topk = torch.zeros(s, **i64)
        self.c_topp = torch.ones(s, **f32)
        self.c_rep = torch.ones(s, **f32)
        self.text_len = torch.zeros(s, **i64)
        self.text_rows = torch.zeros(s, self.context, d, dtype=dt, device=dev)
        self.n_active = torch.zeros((), **i64)  # rows 0..n-1 of a step commit their results
        self._row_tensors = [self.last_token, self.past_hidden, self.pos, self.frames, self.seen,
                             self.min_frames, self.seed_lo, self.seed_hi,
                             self.t_sample, self.t_temp, self.t_topk, self.t_topp, self.t_rep,
                             self.c_sample, self.c_temp, self.c_topk, self.c_topp, self.c_rep,
                             self.text_len]

    def bytes_per_token(self) -> int:
        """Device bytes one context position of one slot costs: its KV in every talker layer
        and its trailing text row."""
        return self.cache.bytes_per_token() + self.text_rows.shape[-1] * self.text_rows.element_size()

    def load_row(self, row: int, sampling: ResolvedSampling, *, seed: int, min_frames: int) -> None:
        """Set a newly admitted row's settings (before its prefill)."""
        s = sampling
        lo, hi = split_seed(seed)
        self.last_token[row] = 0
        self.frames[row] = 0
        self.seen[row] = False
        self.min_frames[row] = min_frames
        self.seed_lo[row], self.seed_hi[row] = lo, hi
        self.t_sample[row], self.t_temp[row] = s.do_sample, s.temperature
        self.t_topk[row], self.t_topp[row], self.t_rep[row] = s.top_k, s.top_p, s.repetition_penalty
        self.c_sample[row], self.c_temp[row] = s.subtalker_do_sample, s.subtalker_temperature
        self.c_topk[row], self.c_topp[row] = s.subtalker_top_k, s.subtalker_top_p
        self.c_rep[row] = s.subtalker_repetition_penalty

    def set_text(self, row: int, trailing: torch.Tensor, start: int = 0) -> None:
        """The row's trailing text rows from `start` on (the rows a step can reach: at most
        the context)."""
        n = min(trailing.shape[0], self.context)
        if n > start:
            self.text_rows[row, start:n] = trailing[start:n]
        self.text_len[row] = trailing.shape[0]

    def move(self, src: int, dst: int, length: int, text_rows: int) -> None:
        """Row `src` into row `dst` (a leaving row is filled by the last active one)."""
        self.cache.move(src, dst, length)
        for t in self._row_tensors:
            t[dst] = t[src]
        n = min(text_rows, self.context)
        self.text_rows[dst, :n] = self.text_rows[src, :n]

    def swap(self, a: int, b: int, length_a: int, length_b: int, text_a: int, text_b: int) -> None:
        self.cache.swap(a, b, length_a, length_b)
        for t in self._row_tensors:
            t[[a, b]] = t[[b, a]]
        ta, tb = min(text_a, self.context), min(text_b, self.context)
        kept = self.text_rows[a, :ta].clone()
        self.text_rows[a, :tb] = self.text_rows[b, :tb]
        self.text_rows[b, :ta] = kept

    # ------------------------------------------------------------------ prefill
    def prefill(self, rows: list[int], embeds: list[torch.Tensor], start: int = 0) -> torch.Tensor:
        """Run the talker over each row's prompt embeddings ((1, T_i, D) each) at positions
        start..start+T_i-1: several rows together (from 0, padded on the right to the
        longest: causal attention keeps a row's real positions from seeing its padding), or
        one row from any `start` (a chunk of a long prompt). Returns the last real hidden
        state of each row (k, 1, D), which also becomes the row's pending hidden state, and
        leaves start+T_i as its position."""
        lengths = [int(e.shape[1]) for e in embeds]
        t = max(lengths)
        if len(rows) > 1:
            if start:
                raise ValueError("rows are prefilled together from position 0 only")
            x = torch.cat([torch.nn.functional.pad(e, (0, 0, 0, t - e.shape[1])) for e in embeds])
        else:
            x = embeds[0]
        end = start + t
        positions = torch.arange(start, end, device=self.device)
        mask = None
        if start > 0:  # a later chunk: causal over the cache, offset by `start`
            keys = torch.arange(end, device=self.device)
            mask = (keys.view(1, -1) <= positions.view(-1, 1)).view(1, 1, t, end)
        self.cache.prefill(rows, start, t)
        hd = self._t_cos.shape[-1]
        cos = self._t_cos[positions].view(1, 1, -1, hd)
        sin = self._t_sin[positions].view(1, 1, -1, hd)
        h = x
        for layer in self._t_layers:
            h = layer(h, cos, sin, self.cache.update, mask)
        h = rms_norm(h, *self._t_norm)
        last = h[torch.arange(len(rows)), torch.tensor(lengths) - 1].unsqueeze(1)  # (k, 1, D)
        index = torch.tensor(rows, device=self.device)
        self.past_hidden[index] = last
        self.pos[index] = torch.tensor(lengths, device=self.device) + start
        return last

    def first_token(self, rows: list[int], hidden: torch.Tensor) -> torch.Tensor:
        """Each row's first codebook-0 token from its prefill's last hidden state (k, 1, D)."""
        logits = self._codec_head(hidden)[:, -1, :]
        index = torch.tensor(rows, device=self.device)
        token = self._talker_token(logits, index, self.frames[index], sampled=True)
        self.last_token[index] = token
        self.seen[index, token] = True
        return token

    # ------------------------------------------------------------------ the step
    def step(self, n: int, context: int, *, sampled: bool, penalize: bool,
             commit: int | None = None) -> torch.Tensor:
        """One frame for rows 0..n-1, whose longest context (position + 1) is `context`.
        Returns (B, 17) on the device: each row's frame (16 codes) and its next codebook-0
        token; rows n..B-1 are padding."""
        b = bucket(n, self.batch_ladder)
        c = bucket(context, self.context_ladder)
        self.n_active.fill_(n if commit is None else commit)
        key = (b, c, sampled, penalize)
        fn = self._steps.get(key)
        if fn is None:
            fn = self._build(key)
            t0 = time.perf_counter()
            out = fn()
            seconds = time.perf_counter() - t0
            if self.compile_mode != "none":
                self.compile_seconds[f"B={b},C={c},sampled={sampled}"] = round(seconds, 3)
                log.info("step bucket B=%d C=%d (sampled=%s) %s in %.2fs", b, c, sampled,
                         "compiled" if self.compile_mode == "compile" else "captured", seconds)
            self._steps[key] = fn
            return out
        return fn()

    def warm(self, batch_sizes: list[int], contexts: list[int], *, sampled: bool,
             penalize: bool = False) -> float:
        """Compile (or capture) the buckets of these batch sizes and contexts now, on an idle
        runner (nothing is committed: no row is active); returns the seconds it took."""
        t0 = time.perf_counter()
        with torch.inference_mode():
            for b in sorted({bucket(n, self.batch_ladder) for n in batch_sizes}):
                for c in sorted({bucket(x, self.context_ladder) for x in contexts}):
                    self.step(b, c, sampled=sampled, penalize=penalize, commit=0)
        return time.perf_counter() - t0

    def _build(self, key: tuple) -> Callable[[], torch.Tensor]:
        b, c, sampled, penalize = key
        body = functools.partial(self.step_tensors, b, c, sampled, penalize)
        if self.compile_mode == "none":
            return body
        if self.compile_mode == "compile":
            _raise_recompile_limit()
            return torch.compile(body, fullgraph=True, dynamic=False, backend=self.compile_backend)
        if self.compile_mode == "cudagraphs":
            return self._capture(body)
        raise EngineError(f"unknown engine.compile {self.compile_mode!r}")

    def _capture(self, body: Callable[[], torch.Tensor]) -> Callable[[], torch.Tensor]:
        """One step as a CUDA graph: the step only reads and writes the runner's static
        buffers, so replaying the graph is the step. Captured after warm-up runs on a side
        stream (as torch.cuda.graphs asks); the step's own state updates during those runs are
        undone by saving and restoring the row tensors and the cache positions it writes."""
        if self.device.type != "cuda":
            raise EngineError("engine.compile: cudagraphs needs a CUDA device")
        saved = [t.clone() for t in self._row_tensors] + [self.past_hidden.clone()]
        stream = torch.cuda.Stream(self.device)
        stream.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(stream):
            for _ in range(2):
                body()
        torch.cuda.current_stream(self.device).wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            out = body()
        for t, s in zip([*self._row_tensors, self.past_hidden], saved, strict=True):
            t.copy_(s)
        # the warm-up runs and the capture wrote keys at the rows' positions: those
        # positions are written again by the real step (replayed below by the caller)

        def replay() -> torch.Tensor:
            graph.replay()
            return out

        return replay

    def step_tensors(self, b: int, c: int, sampled: bool, penalize: bool) -> torch.Tensor:
        """The step itself (see the module docstring): shapes fixed by (b, c), no host read."""
        linear, embedding = torch.nn.functional.linear, torch.nn.functional.embedding
        rows = slice(0, b)
        active = torch.arange(b, device=self.device) < self.n_active
        last, frames, pos = self.last_token[rows], self.frames[rows], self.pos[rows]
        # 1. the code predictor: 15 residual codebooks for every row's pending token
        last_hidden = embedding(last.unsqueeze(1), self._t_embed)  # (b, 1, D)
        past = self.past_hidden[rows]
        embeds = self._project(torch.cat((past, last_hidden), dim=1))
        levels = self.groups - 1
        noise = rs = seen = None
        if sampled:
            noise = counter_noise(self.seed_lo[rows], self.seed_hi[rows], frames, levels,
                                  self.cp_vocab, level0=1)
            rs = RowSampling(self.c_sample[rows], self.c_temp[rows], self.c_topk[rows],
                             self.c_topp[rows], self.cp_vocab)
        if penalize:
            seen = torch.zeros(b, self.cp_vocab, dtype=torch.bool, device=self.device)
        codes = []
        for level in range(levels):
            h = self._predictor_layers(embeds, b, 0 if level == 0 else level + 1)
            scores = linear(h[:, -1, :], self._p_heads[level])
            scores = scores.float() if scores.dtype != torch.float32 else scores
            if seen is not None:
                scores = repetition_penalty(scores, seen, self.c_rep[rows])
            code = scores.argmax(dim=-1) if rs is None else sample_rows(scores, rs, noise[:, level])
            codes.append(code)
            if seen is not None:
                seen = seen.scatter(1, code.unsqueeze(1), True)
            if level < levels - 1:
                embeds = self._project(embedding(code.unsqueeze(1), self._p_embeds[level]))
        frame = torch.cat([last.unsqueeze(1), torch.stack(codes, dim=1)], dim=1)  # (b, 16)
        # 2. the talker: sum of the 16 code embeddings + this step's text conditioning
        hiddens = [last_hidden] + [embedding(frame[:, i + 1:i + 2], self._p_embeds[i])
                                   for i in range(levels)]
        step_in = torch.cat(hiddens, dim=1).sum(1, keepdim=True)
        text_at = frames.clamp(max=self.context - 1)
        text = self.text_rows[rows][torch.arange(b, device=self.device), text_at]  # (b, D)
        text = torch.where((frames < self.text_len[rows]).unsqueeze(1), text, self._tts_pad)
        step_in = step_in + text.unsqueeze(1)
        mask = (torch.arange(c, device=self.device).unsqueeze(0) <= pos.unsqueeze(1)).view(b, 1, 1, c)
        write = functools.partial(self.cache.decode_update, n=b, positions=pos, kv_len=c)
        hd = self._t_cos.shape[-1]
        cos, sin = self._t_cos[pos].view(b, 1, 1, hd), self._t_sin[pos].view(b, 1, 1, hd)
        h = step_in
        for layer in self._t_layers:
            h = layer(h, cos, sin, write, mask)
        hidden = rms_norm(h, *self._t_norm)
        logits = self._codec_head(hidden)[:, -1, :]
        token = self._talker_token(logits, rows, frames + 1, sampled=sampled)
        # 3. commit the active rows' state (padding rows keep theirs)
        step = active.long()
        self.pos[rows] = pos + step
        self.frames[rows] = frames + step
        self.last_token[rows] = torch.where(active, token, last)
        self.past_hidden[rows] = torch.where(active.view(b, 1, 1), hidden[:, -1:], past)
        hit = torch.zeros(b, self.vocab, dtype=torch.bool, device=self.device)
        self.seen[rows] = self.seen[rows] | hit.scatter(1, token.unsqueeze(1), active.unsqueeze(1))
        return torch.cat((frame, token.unsqueeze(1)), dim=1)

    def _talker_token(self, logits: torch.Tensor, rows: slice | torch.Tensor, made: torch.Tensor, *,
                      sampled: bool) -> torch.Tensor:
        """The next codebook-0 token per row; `made`: the frames that exist once it is
        taken (EOS is hidden while that is below min_frames, and it keys the noise)."""
        scores = logits.float() if logits.dtype != torch.float32 else logits
        scores = repetition_penalty(scores, self.seen[rows], self.t_rep[rows])
        below = made < self.min_frames[rows]
        scores = torch.where(below.unsqueeze(1) & self._eos_mask, _NEG_INF, scores)
        scores = torch.where(self._suppress, _NEG_INF, scores)
        if not sampled:
            return scores.argmax(dim=-1)
        noise = counter_noise(self.seed_lo[rows], self.seed_hi[rows], made, 1, self.vocab)[:, 0]
        rs = RowSampling(self.t_sample[rows], self.t_temp[rows], self.t_topk[rows],
                         self.t_topp[rows], self.vocab)
        return sample_rows(scores, rs, noise)

    # ------------------------------------------------------------------ model pieces
    def _init_talker_rope(self) -> None:
        """The talker's rotary tables for every cache position, computed once by its own
        rotary module. The talker's three M-RoPE position rows are equal for speech (qwen-tts
        expands one position id to all three), so every section of the combined table, in
        the plain and in the interleaved layout alike, is the first row's: the table is that
        row (a table row equals what the module gives for that position)."""
        m = self._talker.model
        rs = getattr(self._tc, "rope_scaling", None) or {}
        if rs.get("rope_type", "default") != "default":
            raise EngineError(f"talker rope type {rs.get('rope_type')!r} is not supported")
        with torch.inference_mode():
            probe = torch.zeros(1, 1, 1, dtype=self.dtype, device=self.device)
            ids = torch.arange(self.context, device=self.device, dtype=torch.float32)
            cos, sin = m.rotary_emb(probe, ids.view(1, 1, -1).expand(3, 1, -1))
        self._t_cos, self._t_sin = cos[0, 0], signed_sin(sin[0, 0])  # (context, head_dim)
        self._t_layers = [LeanDecoderLayer(layer, i) for i, layer in enumerate(m.layers)]
        self._t_norm = (m.norm.weight, m.norm.variance_epsilon)

    def set_tts_pad(self, pad: torch.Tensor) -> None:
        """The text row of a frame past the trailing text (the prompt builder's tts_pad)."""
        self._tts_pad = pad.reshape(1, -1)

    def _project(self, x: torch.Tensor) -> torch.Tensor:
        """The predictor's `small_to_mtp_projection` (identity when the sizes match)."""
        return x if self._p_proj is None else torch.nn.functional.linear(x, *self._p_proj)

    def _predictor_layers(self, embeds: torch.Tensor, b: int, start: int) -> torch.Tensor:
        write = functools.partial(self._pcache.update, n=b, start=start)
        cos, sin = self._p_rope[start]
        h = embeds
        for layer in self._p_layers:
            h = layer(h, cos, sin, write)
        return rms_norm(h, *self._p_norm)


def _raise_recompile_limit() -> None:
    """One compiled graph per bucket: allow as many as the ladders have."""
    import torch._dynamo

    cfg = torch._dynamo.config
    for name in ("recompile_limit", "cache_size_limit"):
        if hasattr(cfg, name) and getattr(cfg, name) < 256:
            setattr(cfg, name, 256)
