"""One stateful codec decode call for streams whose transformer contexts differ in length
(`StatefulCodecDecoder.step` left-pads them and masks the padding): per stream, the samples
and the carried state of decoding it alone, over several calls, on the tiny checkpoint.

fp32 on CPU. A stream's context grows from 0 to 71 frames (the 72-frame attention window
minus one) over its first frames, so streams admitted at different times are at different
lengths; the output stage decodes all of a step's chunks of one length in one call.
"""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

from deployments.engine.codec import CodecState, StatefulCodecDecoder
from deployments.engine.types import ModelKind

CHUNKS = [1, 6, 1, 3, 6, 6]  # frames per call after the warm-up


@pytest.fixture(scope="module")
def stock(tiny_engine) -> torch.nn.Module:
    engine = tiny_engine(ModelKind.CUSTOM_VOICE, backend="reference", device="cpu",
                         dtype="float32")
    return engine.model.model.speech_tokenizer.model.decoder


def _transformer_outputs(decoder: StatefulCodecDecoder) -> list[torch.Tensor]:
    """Every output of the decoder's transformer from now on (padding rows included)."""
    seen: list[torch.Tensor] = []
    decoder._decoder.pre_transformer.register_forward_hook(
        lambda _m, _a, out: seen.append(out.last_hidden_state.clone()))
    return seen


def _alone_and_batched(decoder: StatefulCodecDecoder, codes: torch.Tensor, warm_up: list[int]):
    """Stream b first decodes `warm_up[b]` frames alone (its context then that long, at most
    71), then every stream decodes CHUNKS together (batched) or one by one (alone)."""
    alone = [decoder.new_state() for _ in warm_up]
    batched = [decoder.new_state() for _ in warm_up]
    heard_alone: list[list[torch.Tensor]] = [[] for _ in warm_up]
    heard_batched: list[list[torch.Tensor]] = [[] for _ in warm_up]
    for b, n in enumerate(warm_up):
        if n:
            heard_alone[b].append(decoder.step(codes[b:b + 1, :, :n], [alone[b]]))
            heard_batched[b].append(decoder.step(codes[b:b + 1, :, :n], [batched[b]]))
    lengths = [[s.context.shape[1] for s in batched]]
    start = list(warm_up)
    for size in CHUNKS:
        window = torch.stack([codes[b, :, start[b]:start[b] + size] for b in range(len(start))])
        wav = decoder.step(window, batched)
        for b in range(len(start)):
            heard_batched[b].append(wav[b:b + 1])
            heard_alone[b].append(decoder.step(window[b:b + 1], [alone[b]]))
            start[b] += size
        lengths.append([s.context.shape[1] for s in batched])
    return alone, batched, heard_alone, heard_batched, lengths


def _assert_same_streams(alone: list[CodecState], batched: list[CodecState],
                         heard_alone, heard_batched) -> None:
    for b in range(len(alone)):
        a = torch.cat(heard_alone[b], dim=-1).numpy()
        got = torch.cat(heard_batched[b], dim=-1).numpy()
        assert np.isfinite(got).all()
        assert got.shape == a.shape
        np.testing.assert_allclose(got, a, atol=1e-5, rtol=0)
        assert batched[b].context.shape == alone[b].context.shape
        np.testing.assert_allclose(batched[b].context.numpy(), alone[b].context.numpy(),
                                   atol=1e-5, rtol=0)
        for x, y in zip(batched[b].convs, alone[b].convs, strict=True):
            np.testing.assert_allclose(x.numpy(), y.numpy(), atol=1e-5, rtol=0)


@pytest.mark.parametrize("attention", ["sdpa", "eager"])
def test_streams_of_different_context_lengths_decode_in_one_call_as_each_alone(stock, attention):
    """Five streams at contexts 0, 15, 30, 45 and 71 frames: one transformer call per step,
    and per stream the samples, the context and the convolution state of decoding it alone,
    over six calls (the contexts grow and reach the window at different calls)."""
    config = stock.pre_transformer.config
    before = config._attn_implementation
    config._attn_implementation = attention
    try:
        decoder = StatefulCodecDecoder(stock)
        codes = torch.randint(0, 64, (5, 16, 110), generator=torch.Generator().manual_seed(2))
        with torch.inference_mode():
            calls = _transformer_outputs(decoder)
            alone, batched, heard_alone, heard_batched, lengths = _alone_and_batched(
                decoder, codes, [0, 15, 30, 45, 80])
    finally:
        config._attn_implementation = before
    assert lengths[0] == [0, 15, 30, 45, 71]
    assert lengths[-1] == [23, 38, 53, 68, 71]
    # warm-up: 4 streams x 2 calls; then per chunk 1 batched call + 5 alone calls
    assert len(calls) == 8 + len(CHUNKS) * 6
    _assert_same_streams(alone, batched, heard_alone, heard_batched)


def test_empty_context_beside_a_full_window_makes_no_nan(stock):
    """A fresh stream (no context) batched with one at the full 71-frame window: the padding
    rows' transformer outputs are finite too (a padding query sees itself), and both streams
    hear what they would alone."""
    decoder = StatefulCodecDecoder(stock)
    codes = torch.randint(0, 64, (2, 16, 120), generator=torch.Generator().manual_seed(3))
    with torch.inference_mode():
        calls = _transformer_outputs(decoder)
        alone, batched, heard_alone, heard_batched, lengths = _alone_and_batched(
            decoder, codes, [0, 90])
    assert lengths[0] == [0, 71]
    assert all(torch.isfinite(out).all() for out in calls)
    _assert_same_streams(alone, batched, heard_alone, heard_batched)


def test_attention_without_4d_masks_decodes_one_call_per_context_length(stock):
    """An attention function that takes no per-stream mask (flash attention) gets one call
    per context length, the rows back in their order: the same samples as alone."""
    decoder = StatefulCodecDecoder(stock)
    decoder._impl = "flash_attention_2"  # the module itself still runs sdpa on CPU
    codes = torch.randint(0, 64, (3, 16, 60), generator=torch.Generator().manual_seed(4))
    with torch.inference_mode():
        calls = _transformer_outputs(decoder)
        alone, batched, heard_alone, heard_batched, _ = _alone_and_batched(
            decoder, codes, [0, 12, 12])
    # warm-up: 2 streams x 2 calls; then per chunk 2 lengths (k; 12 + k, 12 + k) + 3 alone
    assert len(calls) == 4 + len(CHUNKS) * 5
    _assert_same_streams(alone, batched, heard_alone, heard_batched)


@pytest.mark.parametrize("attention", ["sdpa", "eager"])
def test_without_padding_the_masks_made_here_are_the_modules_own(stock, attention):
    """Streams of one context length decode with masks made by `_padded_masks` (nothing
    padded): the values transformers' builder gives for the module, at lengths within and
    beyond the 72-frame sliding window and at any batch, and the module's own positions."""
    config = stock.pre_transformer.config
    before = config._attn_implementation
    config._attn_implementation = attention
    try:
        decoder = StatefulCodecDecoder(stock)
        for length in (1, 5, 40, 71, 72, 95):
            for rows in (1, 3):
                seq = torch.zeros(rows, length, config.hidden_size)
                made, positions = decoder._padded_masks(seq, torch.zeros(rows, dtype=torch.long))
                theirs = decoder._mask(seq)
                assert set(made) == set(theirs)
                for name, mask in theirs.items():
                    assert mask is not None, (name, length)
                    assert made[name].shape == mask.shape and made[name].dtype == mask.dtype
                    assert torch.equal(made[name], mask), (attention, name, length, rows)
                assert torch.equal(positions, torch.arange(length).expand(rows, length))
    finally:
        config._attn_implementation = before


def test_streaming_decodes_never_call_transformers_mask_builder(stock, monkeypatch):
    """The builder takes 5-7 ms a call on the CPU (through vmap), as long as a small decode:
    streamed chunks of one length or of several, alone or three together, build no mask there,
    and every stream hears what it would alone."""
    from qwen_tts.core.tokenizer_12hz import modeling_qwen3_tts_tokenizer_v2 as mod

    built: list[int] = []
    for name in ("create_causal_mask", "create_sliding_window_causal_mask"):
        original = getattr(mod, name)
        monkeypatch.setattr(mod, name, lambda _f=original, **kw: built.append(1) or _f(**kw))
    codes = torch.randint(0, 64, (3, 16, 110), generator=torch.Generator().manual_seed(5))
    for warm_up in ([4, 4, 4], [0, 0, 9]):  # one length in every call; then padded calls
        with torch.inference_mode():
            alone, batched, heard_alone, heard_batched, _ = _alone_and_batched(
                StatefulCodecDecoder(stock), codes, warm_up)
        _assert_same_streams(alone, batched, heard_alone, heard_batched)
    assert built == []


@pytest.mark.parametrize("stateful", [True, False], ids=["stateful", "left-context"])
def test_streams_started_at_different_times_share_decode_calls_and_sound_as_alone(
        tiny_engine, monkeypatch, stateful):
    """Through the batched engine: each stream starts when the one before it has heard its
    second chunk, so their contexts differ; with the stateful codec their chunks still share
    decode calls, and with either codec scheme (`OutputStage.stateful_codec`) each stream's
    audio equals its non-streamed synthesis."""
    from deployments.engine import StreamChunking, SynthesisRequest

    seen: list[list[int]] = []
    step = StatefulCodecDecoder.step

    def recording(self, codes, states):
        seen.append([s.context.shape[1] for s in states])
        return step(self, codes, states)

    monkeypatch.setattr(StatefulCodecDecoder, "step", recording)
    engine = tiny_engine(ModelKind.CUSTOM_VOICE, backend="batched", device="cpu",
                         dtype="float32", do_sample=False)
    engine.loop.output.stateful_codec = stateful
    try:
        requests = [SynthesisRequest(text="The quick brown fox jumps over the lazy dog.",
                                     speaker=speaker, max_new_tokens=41, min_frames=40)
                    for speaker in ("vivian", "ryan", "eric")]
        # one-frame chunks: every stream has one due in every step it runs
        chunking = StreamChunking(first_chunk_frames=1, chunk_frames=1)
        heard: list[list] = [[] for _ in requests]
        second_chunk = [threading.Event() for _ in requests]

        def listen(i: int) -> None:
            for chunk in engine.stream(requests[i], chunking):
                heard[i].append(chunk.audio)
                if len(heard[i]) == 2:
                    second_chunk[i].set()

        threads = []
        for i in range(len(requests)):
            threads.append(threading.Thread(target=listen, args=(i,)))
            threads[-1].start()
            assert second_chunk[i].wait(60)
        for t in threads:
            t.join(60)
        whole = [engine.synthesize([r])[0].audio for r in requests]
    finally:
        engine.close()
    # one call, several context lengths (the left-context scheme never calls `step`)
    assert any(len(set(lengths)) > 1 for lengths in seen) is stateful
    for got, want in zip(heard, whole, strict=True):
        streamed = np.concatenate(got)
        assert streamed.size == want.size
        assert np.abs(streamed - want).max() <= 1e-4
