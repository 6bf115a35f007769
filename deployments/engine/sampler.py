"""Sampling of the next code per row, on the device, with per-row settings and a counter-based
random stream.

Every per-request setting (do_sample, temperature, top-k, top-p, repetition penalty, on both
levels) is a tensor with one entry per row, gathered by the model runner, so one step serves
requests with different settings without reading anything back to the host. The arithmetic
is that of HF's warpers (repetition penalty, temperature, top-k, top-p, softmax).

Randomness: sampling is `argmax(p / E)` with E exponential noise (a draw from p). The noise of
row r, level l, token v at frame f is a hash of (seed_r, f, l, v): a counter-based stream
(like Philox), computed with integer ops on the device. It depends on nothing but the
request's own seed and its own frame counter, so a seeded request gives the same frames alone
or in any batch, in any row, compiled or not; and there is no generator state to carry, so
the step can be captured as a graph.
"""

from __future__ import annotations

import torch

_NEG_INF = float("-inf")
_MASK32 = 0xFFFFFFFF
# odd multipliers below 2**31: the products of 32-bit values stay below 2**63 (no overflow
# in int64, on any backend)
_M1, _M2, _M3 = 0x7FEB352D, 0x6B43A9B5, 0x5BD1E995


def _mix32(h: torch.Tensor) -> torch.Tensor:
    """A 32-bit avalanche finalizer (xor-shift, multiply) on int64 tensors holding 32-bit values."""
    h = h ^ (h >> 16)
    h = (h * _M1) & _MASK32
    h = h ^ (h >> 15)
    h = (h * _M2) & _MASK32
    h = h ^ (h >> 16)
    return h


def split_seed(seed: int) -> tuple[int, int]:
    """A 63-bit seed as two 32-bit halves (what the rows' seed tensors hold)."""
    return seed & _MASK32, (seed >> 32) & _MASK32


def counter_noise(seed_lo: torch.Tensor, seed_hi: torch.Tensor, frame: torch.Tensor,
                  levels: int, vocab: int, level0: int = 0) -> torch.Tensor:
    """Exponential noise (B, levels, vocab) keyed by (seed, frame, level, token).

    `seed_lo`, `seed_hi`, `frame`: int64 (B,). Levels are numbered from `level0`.
    """
    dev = frame.device
    key = _mix32((seed_lo ^ (frame * _M3 & _MASK32)) & _MASK32)
    key = _mix32(key ^ seed_hi)
    level = torch.arange(level0, level0 + levels, device=dev, dtype=torch.int64)
    token = torch.arange(vocab, device=dev, dtype=torch.int64)
    h = key.view(-1, 1, 1) ^ _mix32((level * _M1 & _MASK32) + 0x9E37).view(1, -1, 1)
    h = _mix32(h ^ token.view(1, 1, -1))
    h = _mix32(h + key.view(-1, 1, 1) & _MASK32)
    return -torch.log(uniform(h))


def uniform(h: torch.Tensor) -> torch.Tensor:
    """32-bit hashes -> u in (0, 1): the 23 high bits as (i + 0.5) / 2**23, exact in float32
    (24 bits would round the largest to 1.0: noise 0, and p / 0 picks a masked token)."""
    return ((h >> 9).to(torch.float32) + 0.5) * (1.0 / 8_388_608.0)


class RowSampling:
    """Per-row sampling settings of rows 0..B-1 for one vocabulary (talker or predictor),
    shaped once per step and reused by every level: no host read anywhere."""

    def __init__(self, do_sample: torch.Tensor, temperature: torch.Tensor, top_k: torch.Tensor,
                 top_p: torch.Tensor, vocab: int) -> None:
        self.do_sample = do_sample
        self.temperature = temperature.unsqueeze(1)
        k = torch.where(top_k > 0, top_k.clamp(max=vocab), torch.full_like(top_k, vocab))
        self.kth_index = (vocab - k).unsqueeze(1)  # of the k-th largest in ascending order
        self.top_p = top_p.unsqueeze(1)


def sample_rows(scores: torch.Tensor, rs: RowSampling, noise: torch.Tensor) -> torch.Tensor:
    """Next token per row of `scores` (B, V): greedy where `do_sample` is off, else
    temperature, top-k, top-p and a draw with `noise` (B, V). One sort serves top-k and
    top-p (HF's order: the top-k mask, then top-p over what is left); static shapes only."""
    greedy = scores.argmax(dim=-1)
    s, order = torch.sort(scores / rs.temperature, dim=-1)  # ascending
    kth = s.gather(1, rs.kth_index)
    s = s.masked_fill(s < kth, _NEG_INF)
    remove = (s.softmax(dim=-1).cumsum(dim=-1) <= 1 - rs.top_p) & (rs.top_p < 1.0)
    remove[..., -1:] = False
    p = s.masked_fill(remove, _NEG_INF).softmax(dim=-1)
    pick = (p / noise.gather(1, order)).argmax(dim=-1, keepdim=True)
    sampled = order.gather(1, pick).squeeze(1)
    return torch.where(rs.do_sample, sampled, greedy)


def repetition_penalty(scores: torch.Tensor, seen: torch.Tensor, penalty: torch.Tensor) -> torch.Tensor:
    """HF's RepetitionPenaltyLogitsProcessor with a per-row penalty over the tokens in `seen`."""
    p = penalty.unsqueeze(1)
    penalized = torch.where(scores < 0, scores * p, scores / p)
    return torch.where(seen, penalized, scores)
