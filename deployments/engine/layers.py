"""The talker's and the code predictor's decoder layers as plain tensor ops, and the KV caches
they write into: what the model runner calls inside a step and a prefill.

The arithmetic is qwen-tts's own (same weights, same attention function, same op order where
it matters), so a batched run gives the reference backend's frames; only the Python call
overhead and the cache layout are ours.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

#: `write(k, v, layer) -> (keys, values)`: a cache's write-then-read for one layer
KVWrite = Callable[[torch.Tensor, torch.Tensor, int], tuple[torch.Tensor, torch.Tensor]]


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """`Qwen3TTSRMSNorm.forward`, op for op, without the module call (the float32 round trip
    is skipped when `x` already is float32: it is the identity there)."""
    if x.dtype == torch.float32:
        return weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps))
    dtype = x.dtype
    x = x.to(torch.float32)
    variance = x.pow(2).mean(-1, keepdim=True)
    x = x * torch.rsqrt(variance + eps)
    return weight * x.to(dtype)


def signed_sin(sin: torch.Tensor) -> torch.Tensor:
    """`sin` with its first half negated: `rotate_half(x) * sin == x.roll(half, -1) *
    signed_sin(sin)` exactly (the same products, the sign moved from one factor to the other)."""
    half = sin.shape[-1] // 2
    return torch.cat((-sin[..., :half], sin[..., half:]), dim=-1)


def attention_function(module: torch.nn.Module) -> Callable:
    """The attention function qwen-tts's own attention module would call."""
    impl = getattr(module.config, "_attn_implementation", "sdpa") or "sdpa"
    if impl == "eager":
        from qwen_tts.core.models.modeling_qwen3_tts import eager_attention_forward

        return eager_attention_forward
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    return ALL_ATTENTION_FUNCTIONS[impl]


class LeanDecoderLayer:
    """A qwen-tts decoder layer (the code predictor's `Qwen3TTSDecoderLayer` or the talker's
    `Qwen3TTSTalkerDecoderLayer`: same structure) called as plain tensor ops with the same
    arithmetic and the same attention function: the predictor runs 15 times per frame, and on
    small models the per-call overhead is most of the time. Fewer ops than the modules, same
    numbers: q/k/v in one matmul (the rows of the three weights stacked: each output column is
    the same dot product), q and k normalised and rotated in one tensor (per-head weights
    stacked), the rotation as `x * cos + roll(x) * signed_sin` (see `signed_sin`), gate and up
    in one matmul."""

    def __init__(self, layer: torch.nn.Module, index: int) -> None:
        a = layer.self_attn
        self.index = index
        self.attn = a
        self.attend = attention_function(a)
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

    def __call__(self, h: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, write: KVWrite,
                 mask: torch.Tensor | None = None) -> torch.Tensor:
        """`sin` is `signed_sin` of the rotary sine; cos/sin broadcast over (B, heads, T, hd).
        `write(k, v, layer)` stores this forward's keys and values in a cache and returns the
        keys and values to attend over."""
        linear = torch.nn.functional.linear
        eps = self.eps
        x = rms_norm(h, self.ln1, eps)
        y = linear(x, self.qkv_w, self.qkv_b).view(*x.shape[:-1], -1, self.head_dim)
        qk, v = y.split(self.qk_v, dim=-2)
        qk = rms_norm(qk, self.qk_norm, eps).transpose(1, 2)
        qk = (qk * cos) + (qk.roll(self.half, -1) * sin)
        q, k = qk.split(self.q_k, dim=1)
        k, v = write(k, v.transpose(1, 2), self.index)
        out, _ = self.attend(self.attn, q, k, v, mask, dropout=0.0, scaling=self.scaling,
                             sliding_window=self.sliding_window)
        out = out.reshape(*x.shape[:-1], -1).contiguous()
        h = h + linear(out, *self.o)
        gate, up = linear(rms_norm(h, self.ln2, eps), self.gate_up).chunk(2, dim=-1)
        return h + linear(self.act(gate) * up, self.down)


class SlotCache:
    """The talker's static KV cache: (slots, kv_heads, max_context, head_dim) per layer.

    Stands in for HF's cache object: the attention calls `update(k, v, layer)` and attends
    over what it returns (`prefill` sets where a prefill writes). A decode step (`decode_update`)
    writes each row's new key at its own position (an index tensor: no host read) and
    reads the first `context` positions of rows 0..B-1 (a view: B and context are the step's
    bucket, so the shapes repeat step after step).
    """

    def __init__(self, layers: int, slots: int, heads: int, context: int, head_dim: int,
                 dtype: torch.dtype, device: str | torch.device) -> None:
        shape = (slots, heads, context, head_dim)
        self.k = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(layers)]
        self.v = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(layers)]
        self.rows = torch.arange(slots, device=device)
        self._rows: list[int] = []
        self._index: torch.Tensor | None = None
        self._start = 0
        self._length = 0

    def prefill(self, rows: list[int], start: int, length: int) -> None:
        """The next forward (`update`) writes positions start..start+length-1 of `rows` and
        attends over 0..start+length-1 (a chunk of a long prompt starts past 0; several rows
        are prefilled together from 0, padded on the right to the longest prompt)."""
        self._rows = rows
        self._index = torch.tensor(rows, device=self.rows.device) if len(rows) > 1 else None
        self._start, self._length = start, length

    def update(self, k: torch.Tensor, v: torch.Tensor, layer: int) -> tuple[torch.Tensor, torch.Tensor]:
        """A prefill's write (see `prefill`): the rows' keys up to the chunk's end."""
        a, b = self._start, self._start + self._length
        if self._index is None:
            r = self._rows[0]
            self.k[layer][r, :, a:b] = k[0]
            self.v[layer][r, :, a:b] = v[0]
            return self.k[layer][r:r + 1, :, :b], self.v[layer][r:r + 1, :, :b]
        self.k[layer][self._index, :, a:b] = k
        self.v[layer][self._index, :, a:b] = v
        return self.k[layer][self._index, :, :b], self.v[layer][self._index, :, :b]

    def decode_update(self, k: torch.Tensor, v: torch.Tensor, layer: int, *, n: int,
                      positions: torch.Tensor, kv_len: int) -> tuple[torch.Tensor, torch.Tensor]:
        """A step's write: row i's key at positions[i], for rows 0..n-1; attends over the
        first kv_len positions of those rows."""
        rows = self.rows[:n]
        self.k[layer][rows, :, positions] = k[:, :, 0]
        self.v[layer][rows, :, positions] = v[:, :, 0]
        return self.k[layer][:n, :, :kv_len], self.v[layer][:n, :, :kv_len]

    def move(self, src: int, dst: int, length: int) -> None:
        for buf in (*self.k, *self.v):
            buf[dst, :, :length] = buf[src, :, :length]

    def swap(self, a: int, b: int, length_a: int, length_b: int) -> None:
        for buf in (*self.k, *self.v):
            kept = buf[a, :, :length_a].clone()
            buf[a, :, :length_b] = buf[b, :, :length_b]
            buf[b, :, :length_a] = kept

    def bytes_per_token(self) -> int:
        """KV bytes one cache position of one slot takes (all layers, keys and values)."""
        k = self.k[0]
        return 2 * len(self.k) * k.shape[1] * k.shape[3] * k.element_size()


class StepCache:
    """The code predictor's cache for one frame (every row at the same position, so a write
    is a slice and the shapes depend on the batch bucket only)."""

    def __init__(self, layers: int, slots: int, heads: int, length: int, head_dim: int,
                 dtype: torch.dtype, device: str | torch.device) -> None:
        shape = (slots, heads, length, head_dim)
        self.k = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(layers)]
        self.v = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(layers)]

    def update(self, k: torch.Tensor, v: torch.Tensor, layer: int, *, n: int,
               start: int) -> tuple[torch.Tensor, torch.Tensor]:
        end = start + k.shape[2]
        self.k[layer][:n, :, start:end] = k
        self.v[layer][:n, :, start:end] = v
        return self.k[layer][:n, :, :end], self.v[layer][:n, :, :end]
