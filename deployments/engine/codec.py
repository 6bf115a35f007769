"""The 12 Hz codec decoder, called with fewer ops per call (the batched backend's chunk decoder).

qwen-tts's `Qwen3TTSTokenizerV2Decoder.forward` recomputes constants on every call: each of
the 16 codebooks divides its embedding sums by its usage counts, and each of the 29 SnakeBeta
activations takes `exp` of its two parameters and a reciprocal. On small models a call is
dominated by per-op overhead, not by the frames it decodes (tiny checkpoint, one CPU thread:
765 ops and ~20 ms for 7 frames, ~28 ms for 31 frames), so those constants are computed once
here and the same arithmetic runs on them: the output equals the module's. The biggest
constant is the transformer's attention masks: the module builds its causal and
sliding-window masks on every call (through `vmap`, most of a small call's time); here they
are built by the same functions with the same arguments once per (batch, frames) shape and
handed to the transformer, which accepts prepared masks.

The module's own submodules do everything else (pre-conv, the sliding-window transformer, the
upsampling and decoder convolutions), so weights are shared with the loaded model and nothing
of it is patched: the reference backend keeps calling the stock decoder.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F  # noqa: N812


class _Snake:
    """SnakeBeta with exp(alpha) and 1 / (exp(beta) + eps) precomputed (same values)."""

    def __init__(self, act: torch.nn.Module) -> None:
        with torch.no_grad():
            self.alpha = torch.exp(act.alpha.unsqueeze(0).unsqueeze(-1))
            self.inv_beta = 1.0 / (torch.exp(act.beta.unsqueeze(0).unsqueeze(-1)) + act.no_div_by_zero)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.inv_beta * torch.pow(torch.sin(x * self.alpha), 2)


class LeanCodecDecoder:
    """`decoder(codes)` for codes (B, 16, T): the waveform (B, 1, T * samples_per_frame),
    as `Qwen3TTSTokenizerV2Decoder.forward` computes it."""

    def __init__(self, decoder: torch.nn.Module) -> None:
        from qwen_tts.core.tokenizer_12hz.modeling_qwen3_tts_tokenizer_v2 import (
            Qwen3TTSTokenizerV2DecoderDecoderBlock as Block,
        )
        from qwen_tts.core.tokenizer_12hz.modeling_qwen3_tts_tokenizer_v2 import (
            Qwen3TTSTokenizerV2DecoderDecoderResidualUnit as Residual,
        )
        from qwen_tts.core.tokenizer_12hz.modeling_qwen3_tts_tokenizer_v2 import SnakeBeta

        self._decoder = decoder
        self.device = decoder.device
        self._num_quantizers = decoder.config.num_quantizers
        q = decoder.quantizer
        self._n_first = q.n_q_semantic
        self._groups = []  # (tables, project_out per layer, output_proj) per RVQ
        with torch.no_grad():
            for rvq in (q.rvq_first, q.rvq_rest):
                tables, projections = [], []
                for layer in rvq.vq.layers:
                    cb = layer._codebook
                    tables.append(cb.embedding_sum / cb.cluster_usage.clamp(min=cb.epsilon)[:, None])
                    out = layer.project_out
                    projections.append(None if isinstance(out, torch.nn.Identity) else out)
                self._groups.append((tables, projections, rvq.output_proj))

        def lean(module: torch.nn.Module):
            if isinstance(module, SnakeBeta):
                return _Snake(module)
            if isinstance(module, Residual):
                a1, c1, a2, c2 = _Snake(module.act1), module.conv1, _Snake(module.act2), module.conv2
                return lambda x: c2(a2(c1(a1(x)))) + x
            if isinstance(module, Block):
                parts = [lean(m) for m in module.block]

                def run(x: torch.Tensor) -> torch.Tensor:
                    for p in parts:
                        x = p(x)
                    return x
                return run
            return module

        self._tail = [lean(m) for m in decoder.decoder]
        self._masks: dict[tuple[int, int, torch.dtype], dict[str, torch.Tensor | None]] = {}

    def _mask(self, embeds: torch.Tensor) -> dict[str, torch.Tensor | None]:
        """The masks `Qwen3TTSTokenizerV2DecoderTransformerModel.forward` would build for
        `embeds` (no cache, no padding), made once per shape."""
        key = (embeds.shape[0], embeds.shape[1], embeds.dtype)
        masks = self._masks.get(key)
        if masks is None:
            from qwen_tts.core.tokenizer_12hz import modeling_qwen3_tts_tokenizer_v2 as mod

            tr = self._decoder.pre_transformer
            cache_position = torch.arange(embeds.shape[1], device=embeds.device)
            kwargs = {"config": tr.config, "input_embeds": embeds, "attention_mask": None,
                      "cache_position": cache_position, "past_key_values": None,
                      "position_ids": cache_position.unsqueeze(0)}
            masks = {"full_attention": mod.create_causal_mask(**kwargs)}
            if tr.has_sliding_layers:
                masks["sliding_attention"] = mod.create_sliding_window_causal_mask(**kwargs)
            if len(self._masks) >= 512:
                self._masks.clear()
            self._masks[key] = masks
        return masks

    def _rvq(self, codes: torch.Tensor, group: int) -> torch.Tensor:
        """`ResidualVectorQuantizer.decode` of codes (B, K, T) -> (B, D, T)."""
        tables, projections, output_proj = self._groups[group]
        quantized = None
        for i, (table, proj) in enumerate(zip(tables, projections, strict=True)):
            e = F.embedding(codes[:, i], table)
            if proj is not None:
                e = proj(e)
            quantized = e if quantized is None else quantized + e
        return output_proj(quantized.transpose(1, 2))

    def __call__(self, codes: torch.Tensor) -> torch.Tensor:
        dec = self._decoder
        if codes.shape[1] != self._num_quantizers:
            raise ValueError(f"Expected {self._num_quantizers} layer of codes, got {codes.shape[1]}")
        hidden = self._rvq(codes[:, :self._n_first], 0)
        if codes.shape[1] > self._n_first:
            hidden += self._rvq(codes[:, self._n_first:], 1)
        hidden = dec.pre_conv(hidden).transpose(1, 2)
        # the masks depend on the shape only; input_proj keeps (B, T) and sets the dtype
        masks = self._mask(hidden)
        hidden = dec.pre_transformer(inputs_embeds=hidden, attention_mask=masks).last_hidden_state
        hidden = hidden.permute(0, 2, 1)
        for blocks in dec.upsample:
            for block in blocks:
                hidden = block(hidden)
        wav = hidden
        for block in self._tail:
            wav = block(wav)
        return wav.clamp(min=-1, max=1)
