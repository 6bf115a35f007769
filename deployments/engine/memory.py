"""The memory planner: how many cache slots and how long a context the batched backend gets,
from the device's free memory and the checkpoint's real bytes per context token.

With `engine.memory_fraction` set (like vLLM's `gpu_memory_utilization`), after the weights
are loaded:

    budget          = free device memory x memory_fraction
    bytes per token = 2 (k, v) x talker layers x kv heads x head dim x dtype bytes
                      + talker hidden x dtype bytes (the slot's trailing text row)
    tokens          = budget // bytes per token
    slots           = min(max_slots, tokens // max_context_tokens)
    context         = max_context_tokens, or tokens when not even one slot fits it

Without it (the default), `max_slots` and `max_context_tokens` are used as given and the plan
only reports what they cost. The plan is logged at start-up and shown in /api/health.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch

from deployments.engine.loading import resolve_dtype
from deployments.engine.types import EngineConfig, EngineError

#: below this many context positions a slot holds no useful utterance
MIN_CONTEXT = 64


@dataclass(frozen=True)
class MemoryPlan:
    slots: int
    context_tokens: int
    bytes_per_token: int
    cache_bytes: int  # slots x context x bytes per token
    free_bytes: int | None  # device memory free before the cache (None: not measured)
    memory_fraction: float | None

    def summary(self) -> str:
        free = "n/a" if self.free_bytes is None else f"{self.free_bytes / 2**30:.2f} GiB free"
        return (f"{self.slots} slots x {self.context_tokens} tokens x {self.bytes_per_token} B "
                f"= {self.cache_bytes / 2**30:.3f} GiB of cache ({free}, "
                f"memory_fraction {self.memory_fraction})")

    def as_dict(self) -> dict:
        return asdict(self)


def kv_bytes_per_token(talker_config: Any, dtype: torch.dtype) -> int:
    """Cache bytes of one context position of one slot for this talker config."""
    size = torch.tensor([], dtype=dtype).element_size()
    tc = talker_config
    head_dim = int(getattr(tc, "head_dim", None) or tc.hidden_size // tc.num_attention_heads)
    kv = 2 * int(tc.num_hidden_layers) * int(tc.num_key_value_heads) * head_dim * size
    return kv + int(tc.hidden_size) * size


def slots_for(free_bytes: int, fraction: float, bytes_per_token: int, max_slots: int,
              max_context: int) -> tuple[int, int]:
    """(slots, context) the formula in the module docstring gives."""
    tokens = int(free_bytes * fraction) // bytes_per_token
    slots = min(max_slots, tokens // max_context)
    if slots >= 1:
        return slots, max_context
    if tokens < MIN_CONTEXT:
        raise EngineError(
            f"engine.memory_fraction {fraction} of {free_bytes / 2**30:.2f} GiB free holds "
            f"{tokens} context tokens at {bytes_per_token} B each: not one slot of "
            f"{MIN_CONTEXT}; raise memory_fraction or free the device")
    return 1, tokens


def free_device_bytes(device: str) -> int:
    if device.startswith("cuda"):
        free, _total = torch.cuda.mem_get_info(torch.device(device))
        return int(free)
    import psutil

    return int(psutil.virtual_memory().available)


def plan_memory(tts: Any, config: EngineConfig, device: str) -> MemoryPlan:
    p = next(tts.model.talker.parameters())
    dtype = p.dtype if p is not None else resolve_dtype(config.dtype, device)
    bpt = kv_bytes_per_token(tts.model.config.talker_config, dtype)
    fraction = config.memory_fraction
    if fraction is None:
        slots, context, free = config.max_slots, config.max_context_tokens, None
    else:
        free = free_device_bytes(device)
        slots, context = slots_for(free, fraction, bpt, config.max_slots, config.max_context_tokens)
    return MemoryPlan(slots=slots, context_tokens=context, bytes_per_token=bpt,
                      cache_bytes=slots * context * bpt, free_bytes=free, memory_fraction=fraction)
