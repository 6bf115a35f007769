"""The batched step loop against the stock qwen-tts path (the reference backend) on the tiny
checkpoints: same codes and audio for every kind, alone and inside a batch admitted at
different steps; per-request seeds, repetition penalty, min_frames, the runaway budget,
cancellation and overload.

Both engines of a kind share one loaded model, so any difference is the generation loop's.
fp32, greedy on both talker levels unless a test says otherwise. Stock qwen-tts makes at most
max_new_tokens - 1 frames; the batched backend keeps that cap, so `max_new_tokens=n + 1`
with `min_frames=n` gives exactly n frames on both.
"""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import torch

from deployments.engine import (
    EngineConfig,
    ModelKind,
    StreamChunking,
    SynthesisRequest,
    TTSEngine,
)
from deployments.engine.types import EngineOverloadedError, FinishReason, SamplingParams

TEXTS = ["Hello world.", "The quick brown fox jumps over the lazy dog.",
         "She said she would be here by noon.", "Numbers 0 1 2 3 4 5 6 7 8 9.",
         "This is a tiny test model for Qwen3 TTS."]


def _tone(seconds: float = 2.0, sr: int = 16_000) -> tuple[np.ndarray, int]:
    t = np.arange(int(seconds * sr)) / sr
    wav = 0.3 * np.sin(2 * np.pi * 180 * t) + 0.05 * np.random.default_rng(0).standard_normal(t.size)
    return wav.astype(np.float32), sr


class Pair:
    """A reference and a batched engine on one loaded checkpoint."""

    def __init__(self, ref: TTSEngine, bat: TTSEngine) -> None:
        self.ref, self.bat = ref, bat

    def reference_codes(self, request: SynthesisRequest) -> tuple[np.ndarray, np.ndarray]:
        """Stock generate's frames (seen by a hook on the talker, as streaming does) and audio."""
        frames: list[torch.Tensor] = []

        def grab(_m, _a, out):
            ids = out.hidden_states[1]
            if ids is not None:
                frames.append(ids[0].detach().clone())

        hook = self.ref.model.model.talker.register_forward_hook(grab)
        try:
            res = self.ref.synthesize([request])[0]
        finally:
            hook.remove()
        codes = torch.stack(frames).numpy() if frames else np.zeros((0, 16), np.int64)
        return codes[:res.frames], res.audio


def _pair(tiny_models_dir, kind: ModelKind, **config) -> Pair:
    base = {"model": str(tiny_models_dir / kind.value), "warmup": False, "device": "cpu",
            "dtype": "float32", "do_sample": False, **config}
    ref = TTSEngine.load(EngineConfig(backend="reference", **base))
    bat = TTSEngine(ref.model, EngineConfig(backend="batched", **base), device="cpu",
                    dtype=torch.float32)
    return Pair(ref, bat)


@pytest.fixture(scope="module")
def cv_pair(tiny_models_dir):
    pair = _pair(tiny_models_dir, ModelKind.CUSTOM_VOICE)
    yield pair
    pair.bat.close()


@pytest.fixture(scope="module")
def vd_pair(tiny_models_dir):
    pair = _pair(tiny_models_dir, ModelKind.VOICE_DESIGN)
    yield pair
    pair.bat.close()


@pytest.fixture(scope="module")
def base_pair(tiny_models_dir):
    pair = _pair(tiny_models_dir, ModelKind.BASE)
    yield pair
    pair.bat.close()


@pytest.fixture(scope="module")
def prompts(base_pair):
    icl = base_pair.ref.build_voice_prompt(*_tone(), ref_text="Reference words here.")
    xvec = base_pair.ref.build_voice_prompt(*_tone(), x_vector_only=True)
    return icl, xvec


def _kind_requests(kind: ModelKind, prompts=None, **kw) -> list[SynthesisRequest]:
    if kind is ModelKind.CUSTOM_VOICE:
        return [SynthesisRequest(text=TEXTS[1], speaker="vivian", instruct="Speak softly.", **kw),
                SynthesisRequest(text=TEXTS[2], speaker="eric", language="chinese", **kw)]
    if kind is ModelKind.VOICE_DESIGN:
        return [SynthesisRequest(text=TEXTS[3], instruct="A calm low voice.", language="english",
                                 **kw)]
    icl, xvec = prompts
    return [SynthesisRequest(text=TEXTS[1], voice_prompt=icl, **kw),
            SynthesisRequest(text=TEXTS[4], voice_prompt=xvec, language="english", **kw)]


def _assert_same(pair: Pair, req: SynthesisRequest, got) -> None:
    codes, audio = pair.reference_codes(req)
    assert got.frames == len(codes)
    np.testing.assert_array_equal(got.extra["codes"], codes)
    assert got.audio.shape == audio.shape
    np.testing.assert_allclose(got.audio, audio, atol=1e-6, rtol=0)


@pytest.mark.parametrize("kind", list(ModelKind), ids=lambda k: k.value)
def test_batch_of_one_equals_reference_frame_for_frame(kind, request):
    pair = request.getfixturevalue({ModelKind.CUSTOM_VOICE: "cv_pair",
                                    ModelKind.VOICE_DESIGN: "vd_pair",
                                    ModelKind.BASE: "base_pair"}[kind])
    prompts = request.getfixturevalue("prompts") if kind is ModelKind.BASE else None
    for req in _kind_requests(kind, prompts, max_new_tokens=40):
        got = pair.bat.synthesize([req])[0]
        assert got.extra["backend"] == "batched"
        _assert_same(pair, req, got)


def _staggered(engine: TTSEngine, requests: list[SynthesisRequest], steps_apart: int = 3):
    """Submit each request `steps_apart` loop steps after the previous one (so they join a
    running batch at different steps); results in request order."""
    loop = engine.loop
    results: list = [None] * len(requests)

    def run(i: int) -> None:
        results[i] = engine.synthesize([requests[i]])[0]

    threads = []
    for i in range(len(requests)):
        start = loop.loop_stats.steps
        t = threading.Thread(target=run, args=(i,))
        t.start()
        threads.append(t)
        deadline = time.monotonic() + 10
        while (i + 1 < len(requests) and loop.loop_stats.steps < start + steps_apart
               and any(r is None for r in results[:i + 1]) and time.monotonic() < deadline):
            time.sleep(0.002)
    for t in threads:
        t.join(60)
    return results


def test_requests_admitted_at_different_steps_equal_reference(cv_pair):
    speakers = ["vivian", "ryan", "eric", "serena", "dylan", "aiden", "sohee", "uncle_fu"]
    reqs = [SynthesisRequest(text=TEXTS[i % len(TEXTS)] * (1 + i % 3), speaker=speakers[i],
                             instruct="Speak quickly." if i % 2 else None,
                             language="auto" if i % 3 else "english",
                             max_new_tokens=30 + 3 * i, min_frames=8 + 2 * i)
            for i in range(8)]
    sizes: list[int] = []
    loop = cv_pair.bat.loop
    orig = loop.observer.on_step
    loop.observer.on_step = lambda n, s: sizes.append(n)
    try:
        got = _staggered(cv_pair.bat, reqs)
    finally:
        loop.observer.on_step = orig
    assert max(sizes) >= 4  # they really shared steps
    for req, res in zip(reqs, got, strict=True):
        _assert_same(cv_pair, req, res)


def test_clone_modes_mixed_in_one_batch_equal_reference(base_pair, prompts):
    icl, xvec = prompts
    reqs = [SynthesisRequest(text=TEXTS[i % len(TEXTS)], voice_prompt=icl if i % 2 else xvec,
                             max_new_tokens=24 + 4 * i, min_frames=10 + i) for i in range(4)]
    for req, res in zip(reqs, _staggered(base_pair.bat, reqs, steps_apart=2), strict=True):
        _assert_same(base_pair, req, res)


def test_steps_really_batch_requests(cv_pair):
    reqs = [SynthesisRequest(text=TEXTS[1], speaker="ryan", max_new_tokens=21, min_frames=20)
            for _ in range(4)]
    sizes = []
    loop = cv_pair.bat.loop
    orig = loop.observer.on_step
    loop.observer.on_step = lambda n, s: sizes.append(n)
    try:
        res = cv_pair.bat.synthesize(reqs)
    finally:
        loop.observer.on_step = orig
    assert [r.frames for r in res] == [20] * 4
    assert max(sizes) == 4


def _sampled(seed: int, **kw) -> SynthesisRequest:
    return SynthesisRequest(text=TEXTS[1], speaker="vivian", seed=seed, max_new_tokens=26,
                            min_frames=25, sampling=SamplingParams(do_sample=True), **kw)


def test_seeded_sampled_request_is_the_same_alone_and_in_a_batch_of_eight(cv_pair):
    alone = cv_pair.bat.synthesize([_sampled(1234)])[0]
    again = cv_pair.bat.synthesize([_sampled(1234)])[0]
    np.testing.assert_array_equal(alone.extra["codes"], again.extra["codes"])
    batch = cv_pair.bat.synthesize([_sampled(s) for s in (5, 6, 1234, 7, 8, 9, 10, 11)])
    inside = batch[2]
    np.testing.assert_array_equal(alone.extra["codes"], inside.extra["codes"])
    np.testing.assert_allclose(alone.audio, inside.audio, atol=1e-6, rtol=0)
    # sampling is real: other seeds give other codes, and greedy differs from sampled
    assert not np.array_equal(batch[0].extra["codes"], inside.extra["codes"])
    greedy = cv_pair.bat.synthesize([SynthesisRequest(text=TEXTS[1], speaker="vivian",
                                                      max_new_tokens=26, min_frames=25)])[0]
    assert not np.array_equal(greedy.extra["codes"], alone.extra["codes"])


def test_predictor_sampling_is_per_request(cv_pair):
    """Greedy talker, sampled predictor: codebook 0 stays the greedy one, the rest change."""
    greedy = SynthesisRequest(text=TEXTS[2], speaker="ryan", max_new_tokens=16, min_frames=15)
    mixed = SynthesisRequest(text=TEXTS[2], speaker="ryan", max_new_tokens=16, min_frames=15,
                             seed=3, sampling=SamplingParams(do_sample=False,
                                                             subtalker_do_sample=True))
    g, m = cv_pair.bat.synthesize([greedy, mixed])
    assert g.extra["codes"][0, 0] == m.extra["codes"][0, 0]
    assert not np.array_equal(g.extra["codes"][:, 1:], m.extra["codes"][:, 1:])
    _assert_same(cv_pair, greedy, g)


def test_repetition_penalty_changes_output_and_matches_reference(cv_pair):
    def req(penalty: float) -> SynthesisRequest:
        return SynthesisRequest(text=TEXTS[3], speaker="serena", max_new_tokens=41, min_frames=40,
                                sampling=SamplingParams(repetition_penalty=penalty))

    plain, penalized = cv_pair.bat.synthesize([req(1.0), req(1.05)])
    assert not np.array_equal(plain.extra["codes"], penalized.extra["codes"])
    _assert_same(cv_pair, req(1.05), penalized)
    _assert_same(cv_pair, req(1.0), plain)


def test_min_frames_gives_exactly_that_many_frames(cv_pair):
    for n in (3, 17, 33):
        req = SynthesisRequest(text=TEXTS[0], speaker="aiden", max_new_tokens=n + 1, min_frames=n)
        got = cv_pair.bat.synthesize([req])[0]
        assert got.frames == n and got.audio.size == n * 1920
        assert got.finish_reason is FinishReason.LENGTH
        assert cv_pair.ref.synthesize([req])[0].frames == n


def test_runaway_budget_ends_a_request_and_says_so(tiny_models_dir):
    pair = _pair(tiny_models_dir, ModelKind.CUSTOM_VOICE, budget_floor_frames=4,
                 max_frames_per_text_token=0.01)
    try:
        free = SynthesisRequest(text=TEXTS[1], speaker="vivian", max_new_tokens=40)
        capped = pair.bat.synthesize([free])[0]
        unbounded = pair.bat.synthesize([SynthesisRequest(text=TEXTS[1], speaker="vivian",
                                                          max_new_tokens=40, min_frames=30)])[0]
        assert unbounded.frames >= 30  # min_frames lifts the budget
        ref = pair.ref.synthesize([free])[0]
        assert capped.frames == ref.frames
        assert capped.frames <= 5
        if capped.frames == 5:
            assert capped.finish_reason is FinishReason.BUDGET
            assert ref.finish_reason is FinishReason.BUDGET
    finally:
        pair.bat.close()


def test_cancelled_stream_frees_its_slot_for_the_next_request(tiny_models_dir):
    pair = _pair(tiny_models_dir, ModelKind.CUSTOM_VOICE, max_slots=1, max_waiting=1)
    try:
        bat = pair.bat
        long = SynthesisRequest(text=TEXTS[1], speaker="vivian", max_new_tokens=400, min_frames=399)
        first = bat.stream(long, StreamChunking(first_chunk_frames=1, chunk_frames=2))
        next(first)
        assert bat.loop.loop_stats.active == 1
        waiting = bat.stream(SynthesisRequest(text=TEXTS[0], speaker="ryan", max_new_tokens=11,
                                              min_frames=10))
        with pytest.raises(EngineOverloadedError) as info:  # 1 slot busy, 1 waiting: full
            bat.synthesize([SynthesisRequest(text=TEXTS[0], speaker="ryan", max_new_tokens=5)])
        assert info.value.retry_after_s >= 1
        t0 = time.perf_counter()
        first.close()
        chunks = list(waiting)
        assert time.perf_counter() - t0 < 30
        assert chunks[-1].final and chunks[-1].total_frames == 10
        assert first.frames < 399
        assert bat.stream_stats.streams_cancelled >= 1 and bat.stream_stats.active == 0
        deadline = time.monotonic() + 5  # the loop updates its counters after the step
        while bat.loop.loop_stats.active and time.monotonic() < deadline:
            time.sleep(0.01)
        assert bat.loop.loop_stats.active == 0
    finally:
        pair.bat.close()


@pytest.mark.parametrize("kind", list(ModelKind), ids=lambda k: k.value)
def test_streamed_equals_non_streamed_for_one_seed(kind, request):
    pair = request.getfixturevalue({ModelKind.CUSTOM_VOICE: "cv_pair",
                                    ModelKind.VOICE_DESIGN: "vd_pair",
                                    ModelKind.BASE: "base_pair"}[kind])
    prompts = request.getfixturevalue("prompts") if kind is ModelKind.BASE else None
    chunking = StreamChunking(first_chunk_frames=1, chunk_frames=3, left_context_frames=25)
    for req in _kind_requests(kind, prompts, seed=11, max_new_tokens=31, min_frames=12,
                              sampling=SamplingParams(do_sample=True)):
        whole = pair.bat.synthesize([req])[0]
        chunks = list(pair.bat.stream(req, chunking))
        assert chunks[-1].final and not any(c.final for c in chunks[:-1])
        assert [c.index for c in chunks] == list(range(len(chunks)))
        streamed = np.concatenate([c.audio for c in chunks])
        assert streamed.size == whole.audio.size
        assert np.abs(streamed - whole.audio).max() <= 1e-4
        assert chunks[-1].total_frames == whole.frames
        assert chunks[-1].finish_reason is whole.finish_reason


def test_lean_codec_decoder_equals_the_stock_decoder(cv_pair):
    """The batched backend's chunk decoder (constants and attention masks made once) gives
    the stock decoder's samples, windows shorter and longer than the 72-frame attention
    window, batched or not."""
    from deployments.engine.codec import LeanCodecDecoder

    stock = cv_pair.ref.model.model.speech_tokenizer.model.decoder
    lean = LeanCodecDecoder(stock)
    gen = torch.Generator().manual_seed(0)
    with torch.inference_mode():
        for batch, frames in ((1, 1), (1, 7), (3, 31), (2, 80)):
            codes = torch.randint(0, 64, (batch, 16, frames), generator=gen)
            for _ in range(2):  # the second call reuses the cached masks
                np.testing.assert_allclose(lean(codes).numpy(), stock(codes).numpy(),
                                           atol=1e-6, rtol=0)


def test_stateful_codec_decoder_equals_one_whole_decode(cv_pair):
    """Decoding only the new frames of each chunk with the decoder's carried state (causal
    convolution inputs, transposed-convolution overlap, the attention window's context) gives
    the samples of one whole decode, past the 72-frame attention window, for a batch."""
    from deployments.engine.codec import StatefulCodecDecoder

    stock = cv_pair.ref.model.model.speech_tokenizer.model.decoder
    dec = StatefulCodecDecoder(stock)
    gen = torch.Generator().manual_seed(1)
    with torch.inference_mode():
        codes = torch.randint(0, 64, (3, 16, 100), generator=gen)
        whole = stock(codes).numpy()
        states = [dec.new_state() for _ in range(3)]
        parts, start = [], 0
        for size in [1, 6, 3, 40, 6, 44]:
            parts.append(dec.step(codes[:, :, start:start + size], states).numpy())
            start += size
        assert start == 100
        np.testing.assert_allclose(np.concatenate(parts, axis=-1), whole, atol=1e-5, rtol=0)
