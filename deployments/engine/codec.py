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
    """SnakeBeta with exp(alpha) and 1 / (exp(beta) + eps) precomputed (same values), in
    three passes over one temporary (x * alpha, then sin and square in place) and one fused
    multiply-add: 40-75% faster than the module's five passes on the decoder's long late
    stages on the CPU (the sum is rounded once, so samples differ by up to ~5e-7)."""

    def __init__(self, act: torch.nn.Module) -> None:
        with torch.no_grad():
            self.alpha = torch.exp(act.alpha.unsqueeze(0).unsqueeze(-1))
            self.inv_beta = 1.0 / (torch.exp(act.beta.unsqueeze(0).unsqueeze(-1)) + act.no_div_by_zero)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        t = x * self.alpha
        return torch.addcmul(x, t.sin_().square_(), self.inv_beta)


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
        self._masks: dict[tuple[int, torch.dtype, torch.device],
                          dict[str, torch.Tensor | None]] = {}

    def _mask(self, embeds: torch.Tensor) -> dict[str, torch.Tensor | None]:
        """The masks `Qwen3TTSTokenizerV2DecoderTransformerModel.forward` would build for
        `embeds` (no cache, no padding), made once per length.

        They depend on the sequence's length only, not on its batch: built once for one row
        (transformers builds them through `vmap`, 5-7 ms a call on the CPU demo, as much as a
        small decode) and expanded to the batch, a view with the same values. (Keyed by
        batch and length they were rebuilt on most streaming calls: py-spy of a replica at 16
        streams through HTTP had 19% of the codec thread in the builder. Streaming decodes
        with sdpa or eager attention now make their masks directly: `_padded_masks`.)"""
        key = (embeds.shape[1], embeds.dtype, embeds.device)
        masks = self._masks.get(key)
        if masks is None:
            from qwen_tts.core.tokenizer_12hz import modeling_qwen3_tts_tokenizer_v2 as mod

            tr = self._decoder.pre_transformer
            cache_position = torch.arange(embeds.shape[1], device=embeds.device)
            kwargs = {"config": tr.config, "input_embeds": embeds[:1], "attention_mask": None,
                      "cache_position": cache_position, "past_key_values": None,
                      "position_ids": cache_position.unsqueeze(0)}
            masks = {"full_attention": mod.create_causal_mask(**kwargs)}
            if tr.has_sliding_layers:
                masks["sliding_attention"] = mod.create_sliding_window_causal_mask(**kwargs)
            if len(self._masks) >= 512:
                self._masks.clear()
            self._masks[key] = masks
        rows = embeds.shape[0]
        return {name: m if m is None or m.shape[0] == rows else m.expand(rows, *m.shape[1:])
                for name, m in masks.items()}

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


class CodecState:
    """One stream's decoder state: the last inputs of every causal convolution (zeros before
    the first frame, as the convolutions' own left padding) and the transformer's last inputs
    (up to its sliding window minus one). Touched by one thread at a time."""

    def __init__(self, convs: list[torch.Tensor], width: int, dtype: torch.dtype,
                 device: torch.device) -> None:
        self.convs = convs
        self.context = torch.zeros(1, 0, width, dtype=dtype, device=device)


class StatefulCodecDecoder(LeanCodecDecoder):
    """The codec decoder run frame-causally with state: `step(codes, states)` decodes only the
    new frames of each stream and carries every causal convolution's left inputs (and the
    transposed convolutions' overlap) and the sliding-window transformer's context from one
    call to the next. The decoder is causal (causal convolutions, a 72-frame attention window),
    so the samples are those of one whole-utterance decode, up to float rounding (rotary
    positions count from the context's start instead of the utterance's); left-context
    decoding instead re-decodes 25 earlier frames per chunk and cuts the attention and
    receptive field at them.

    One call serves streams of any context lengths (shorter contexts left-padded and masked),
    so the output stage makes one call per chunk length, not one per stream: on the tiny
    checkpoint (one CPU thread, contexts spread over 0..71; `benchmarks/codec_batching.py`)
    one-frame chunks of 4 / 8 / 16 streams took 6 / 8.5 / 20 ms instead of 13 / 28 / 54 ms
    (x2.0-3.3); 6-frame chunks x1.6 / x1.9 / x1.05. A second run on a busy machine (load 8,
    `--reps 20`) gave x2.0 / x2.9 / x1.9 for one-frame chunks and x1.5 / x1.6 / x0.77 for
    6-frame chunks: 16 streams x 6 frames is compute, not per-op overhead, and padding every
    context to 71 frames then costs more than the calls it saves. A stream alone takes the
    unpadded path, as before."""

    def __init__(self, decoder: torch.nn.Module) -> None:
        super().__init__(decoder)
        from qwen_tts.core.tokenizer_12hz.modeling_qwen3_tts_tokenizer_v2 import (
            Qwen3TTSTokenizerV2CausalConvNet as Conv,
        )
        from qwen_tts.core.tokenizer_12hz.modeling_qwen3_tts_tokenizer_v2 import (
            Qwen3TTSTokenizerV2CausalTransConvNet as TransConv,
        )
        from qwen_tts.core.tokenizer_12hz.modeling_qwen3_tts_tokenizer_v2 import (
            Qwen3TTSTokenizerV2ConvNeXtBlock as ConvNeXt,
        )
        from qwen_tts.core.tokenizer_12hz.modeling_qwen3_tts_tokenizer_v2 import (
            Qwen3TTSTokenizerV2DecoderDecoderBlock as Block,
        )
        from qwen_tts.core.tokenizer_12hz.modeling_qwen3_tts_tokenizer_v2 import (
            Qwen3TTSTokenizerV2DecoderDecoderResidualUnit as Residual,
        )
        from qwen_tts.core.tokenizer_12hz.modeling_qwen3_tts_tokenizer_v2 import SnakeBeta

        self._specs: list[tuple[int, int]] = []  # (channels, left inputs) per stateful conv
        tr_config = decoder.pre_transformer.config
        self._sliding = int(tr_config.sliding_window)
        self._window = self._sliding - 1
        # the attention functions that take a 4-D mask per stream (flash attention takes none)
        self._impl = getattr(tr_config, "_attn_implementation", "sdpa") or "sdpa"
        self._width = int(decoder.pre_transformer.config.latent_dim)
        p = next(decoder.parameters())
        self._dtype, self._dev = p.dtype, p.device

        def conv(module: torch.nn.Module):
            c = module.conv
            if c.stride[0] != 1:
                raise ValueError("stateful decoding supports stride-1 causal convolutions")
            pad = int(module.padding)
            if pad == 0:
                return lambda x, st: c(x)
            i = len(self._specs)
            self._specs.append((c.in_channels, pad))

            def run(x: torch.Tensor, st: list[torch.Tensor]) -> torch.Tensor:
                x = torch.cat((st[i], x), dim=-1)
                st[i] = x[..., -pad:]
                return c(x)
            return run

        def trans(module: torch.nn.Module):
            c = module.conv
            k, r = c.kernel_size[0], c.stride[0]
            n = -(-k // r) - 1  # earlier inputs that overlap an input's outputs
            if n == 0:
                return lambda x, st: c(x)[..., :x.shape[-1] * r]
            i = len(self._specs)
            self._specs.append((c.in_channels, n))

            def run(x: torch.Tensor, st: list[torch.Tensor]) -> torch.Tensor:
                t = x.shape[-1]
                x = torch.cat((st[i], x), dim=-1)
                st[i] = x[..., -n:]
                return c(x)[..., n * r:(n + t) * r]
            return run

        def build(module: torch.nn.Module):
            if isinstance(module, SnakeBeta):
                snake = _Snake(module)
                return lambda x, st: snake(x)
            if isinstance(module, Conv):
                return conv(module)
            if isinstance(module, TransConv):
                return trans(module)
            if isinstance(module, Residual):
                a1, c1 = _Snake(module.act1), conv(module.conv1)
                a2, c2 = _Snake(module.act2), conv(module.conv2)
                return lambda x, st: c2(a2(c1(a1(x), st)), st) + x
            if isinstance(module, ConvNeXt):
                dw, m = conv(module.dwconv), module

                def convnext(x: torch.Tensor, st: list[torch.Tensor]) -> torch.Tensor:
                    h = dw(x, st).permute(0, 2, 1)
                    h = m.pwconv2(m.act(m.pwconv1(m.norm(h))))
                    return x + (m.gamma * h).permute(0, 2, 1)
                return convnext
            if isinstance(module, Block):
                parts = [build(b) for b in module.block]

                def block(x: torch.Tensor, st: list[torch.Tensor]) -> torch.Tensor:
                    for part in parts:
                        x = part(x, st)
                    return x
                return block
            raise ValueError(f"stateful decoding does not know {type(module).__name__}")

        self._pre_conv = conv(decoder.pre_conv)
        self._up = [build(b) for blocks in decoder.upsample for b in blocks]
        self._stack = [build(b) for b in decoder.decoder]

    def new_state(self) -> CodecState:
        return CodecState([torch.zeros(1, c, n, dtype=self._dtype, device=self._dev)
                           for c, n in self._specs], self._width, self._dtype, self._dev)

    def step(self, codes: torch.Tensor, states: list[CodecState]) -> torch.Tensor:
        """The waveform (B, 1, T * samples_per_frame) of the new frames `codes` (B, 16, T) of
        B streams, whatever their transformer contexts' lengths; updates `states`.

        Streams whose contexts are shorter than the longest are left-padded to it and kept
        from the padding by `_padded_masks`, so one call serves every stream with a chunk of
        T frames (a stream's context grows from 0 to 71 frames over its first ~6 s, so
        streams admitted at different times seldom share a length, and on small models a
        call costs mostly per-op overhead). Each stream's samples are those of decoding it
        alone, up to float rounding. Without padding the same masks are the module's own
        (`_padded_masks` with no padding): made here on every call, they cost a few tensor
        comparisons, where transformers' builder takes 5-7 ms on the CPU demo (through
        `vmap`) and a cache of its masks missed on a fresh replica's first lengths."""
        lengths = [s.context.shape[1] for s in states]
        if len(set(lengths)) > 1 and self._impl not in ("sdpa", "eager"):
            return self.step_by_context(codes, states)
        dec = self._decoder
        st = [torch.cat(parts, dim=0) for parts in zip(*(s.convs for s in states), strict=True)]
        hidden = self._rvq(codes[:, :self._n_first], 0)
        if codes.shape[1] > self._n_first:
            hidden += self._rvq(codes[:, self._n_first:], 1)
        hidden = self._pre_conv(hidden, st).transpose(1, 2)  # (B, T, latent)
        longest = max(lengths)
        ctx = torch.cat([s.context if n == longest else F.pad(s.context, (0, 0, longest - n, 0))
                         for s, n in zip(states, lengths, strict=True)])
        seq = torch.cat((ctx, hidden), dim=1)
        if self._impl not in ("sdpa", "eager"):  # no 4-D mask (one length): the module's
            out = dec.pre_transformer(inputs_embeds=seq, attention_mask=self._mask(seq))
        else:  # padded or not, masks made here: a few comparisons, no vmap
            pads = torch.tensor([longest - n for n in lengths], device=seq.device)
            masks, positions = self._padded_masks(seq, pads)
            out = dec.pre_transformer(inputs_embeds=seq, attention_mask=masks,
                                      position_ids=positions)
        hidden = out.last_hidden_state[:, longest:].permute(0, 2, 1)
        for part in self._up:
            hidden = part(hidden, st)
        wav = hidden
        for part in self._stack:
            wav = part(wav, st)
        total = seq.shape[1]
        for b, (s, n) in enumerate(zip(states, lengths, strict=True)):
            s.convs = [x[b:b + 1] for x in st]
            # its own last (window - 1) real frames: no padding is carried on
            s.context = seq[b:b + 1, max(longest - n, total - self._window):]
        return wav.clamp(min=-1, max=1)

    def _padded_masks(self, seq: torch.Tensor,
                      pads: torch.Tensor) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """The transformer's masks and rotary positions for `seq` (B, L, latent) whose row b
        starts with `pads[b]` padding frames. A real query sees what the module's masks let it
        see (causal; within the sliding window for sliding layers), minus the padding; a
        padding query sees itself only (no row is empty, so softmax makes no NaN, and nothing
        reads a padding row's output). Positions count from each row's first real frame, as
        the stream alone would count them (RoPE is relative, so shifted positions give the
        same attention up to float rounding; these give the alone call's rounding)."""
        length = seq.shape[1]
        pos = torch.arange(length, device=seq.device)
        query, key = pos[:, None], pos[None, :]
        real_key = key[None] >= pads[:, None, None]  # (B, 1, L)
        diagonal = query == key

        def mask(allowed: torch.Tensor) -> torch.Tensor:
            allowed = ((allowed[None] & real_key) | diagonal)[:, None]  # (B, 1, L, L)
            if self._impl == "sdpa":
                return allowed
            zero = torch.zeros((), dtype=seq.dtype, device=seq.device)
            return torch.where(allowed, zero, torch.finfo(seq.dtype).min)

        causal = key <= query
        masks = {"full_attention": mask(causal)}
        if self._decoder.pre_transformer.has_sliding_layers:
            masks["sliding_attention"] = mask(causal & (key > query - self._sliding))
        return masks, (pos[None] - pads[:, None]).clamp(min=0)

    def step_by_context(self, codes: torch.Tensor, states: list[CodecState]) -> torch.Tensor:
        """`step` without padding: one call per context length, the rows put back in order
        (for an attention function that takes no 4-D mask, flash attention; and the grouping
        `benchmarks/codec_batching.py` measures the padded call against)."""
        rows: dict[int, list[int]] = {}
        for b, s in enumerate(states):
            rows.setdefault(s.context.shape[1], []).append(b)
        wav: torch.Tensor | None = None
        for index in rows.values():
            part = self.step(codes[index], [states[b] for b in index])
            if wav is None:
                wav = part.new_empty((len(states), *part.shape[1:]))
            wav[index] = part
        assert wav is not None
        return wav
