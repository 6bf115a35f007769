"""The batched engine's step on the CPU: capturable (every bucket traces as one graph and runs
on tensors without data, so no value is read back to the host inside it), compiled equal to
eager frame for frame, the counter-based sampler keyed by the request alone, and the memory
planner's formula.

Tracing is kept cheap: dynamo's `eager` backend checks `fullgraph` in seconds and
`aot_eager` runs the captured, functionalized graph without inductor's C++ build; the one
inductor run is the seeded-request test (and `benchmarks/engine.py`).
"""

from __future__ import annotations

import functools
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch._subclasses.fake_tensor import DataDependentOutputException, FakeTensorMode

from deployments.engine import EngineConfig, ModelKind, SynthesisRequest, TTSEngine
from deployments.engine.memory import kv_bytes_per_token, slots_for
from deployments.engine.model_runner import bucket, ladder
from deployments.engine.sampler import counter_noise, split_seed, uniform
from deployments.engine.types import SamplingParams, UnsupportedValueError

TEXT = "The quick brown fox jumps over the lazy dog."


def _engine(tiny_models_dir, kind=ModelKind.CUSTOM_VOICE, model=None, **config) -> TTSEngine:
    base = {"model": str(tiny_models_dir / kind.value), "warmup": False, "device": "cpu",
            "dtype": "float32", "do_sample": False, **config}
    if model is None:
        return TTSEngine.load(EngineConfig(**base))
    return TTSEngine(model, EngineConfig(**base), device="cpu", dtype=torch.float32)


@pytest.fixture(scope="module")
def small(tiny_models_dir):
    """An engine with a two-rung batch ladder (1, 2) and context ladder (64, 128)."""
    engine = _engine(tiny_models_dir, max_slots=2, max_context_tokens=128)
    yield engine
    engine.close()


def test_ladders_and_buckets():
    assert ladder(16) == [1, 2, 4, 8, 16]
    assert ladder(12) == [1, 2, 4, 8, 12]
    assert ladder(4096, 64) == [64, 128, 256, 512, 1024, 2048, 4096]
    assert bucket(5, ladder(16)) == 8 and bucket(1, ladder(16)) == 1 and bucket(16, ladder(16)) == 16
    with pytest.raises(ValueError):
        bucket(17, ladder(16))


def test_every_bucket_runs_on_tensors_without_data(small):
    """FakeTensorMode: any host read of a value inside the step (`int(t)`, `.tolist()`, a
    data-dependent branch) raises; the runner's real state is left as it was."""
    runner = small.loop.runner
    before = [t.clone() for t in (runner.pos, runner.frames, runner.last_token, runner.seen)]
    with torch.inference_mode():
        variants = iter([(False, False), (True, True), (True, False), (False, True)])
        for b in runner.batch_ladder:
            for c in runner.context_ladder:
                with FakeTensorMode(allow_non_fake_inputs=True):
                    out = runner.step_tensors(b, c, *next(variants))
                assert tuple(out.shape) == (b, 17)
        with pytest.raises(DataDependentOutputException), FakeTensorMode(allow_non_fake_inputs=True):
            int(runner.pos[:1].max())  # what the step must never do
    after = (runner.pos, runner.frames, runner.last_token, runner.seen)
    assert all(torch.equal(a, b) for a, b in zip(before, after, strict=True))


def test_every_bucket_compiles_as_one_graph(small):
    """fullgraph=True: a graph break fails. Every (batch, context) bucket once, the sampling
    and predictor-penalty variants spread over them."""
    runner = small.loop.runner
    variants = iter([(False, False), (True, True), (True, False), (False, True)])
    with torch.inference_mode():
        for b in runner.batch_ladder:
            for c in runner.context_ladder:
                sampled, penalize = next(variants)
                torch._dynamo.reset()
                fn = torch.compile(functools.partial(runner.step_tensors, b, c, sampled, penalize),
                                   fullgraph=True, dynamic=False, backend="eager")
                assert tuple(fn().shape) == (b, 17)
    torch._dynamo.reset()


def _seeded(seed: int | None, **kw) -> SynthesisRequest:
    return SynthesisRequest(text="Hello there.", speaker="ryan", seed=seed, max_new_tokens=21,
                            min_frames=20, sampling=SamplingParams(do_sample=True, **kw))


def test_compiled_step_equals_eager_frame_for_frame(tiny_models_dir, small):
    """engine.compile: compile (the graph dynamo captures, run by its `eager` backend: no
    C++ build) gives the eager step's frames, greedy and seeded, in a batch of 8; and under
    compile a seeded request gives the same audio alone and in that batch."""
    eager = _engine(tiny_models_dir, model=small.model, max_slots=8, max_context_tokens=64)
    compiled = _engine(tiny_models_dir, model=small.model, max_slots=8, max_context_tokens=64,
                       compile="compile", batch_buckets=(1, 8))
    batch = [SynthesisRequest(text=TEXT, speaker="vivian", max_new_tokens=21, min_frames=20),
             _seeded(5, repetition_penalty=1.1), _seeded(1234), *(_seeded(s) for s in range(6))]
    try:
        compiled.loop.runner.compile_backend = "eager"
        want = eager.synthesize(batch)
        got = compiled.synthesize(batch)
        alone = compiled.synthesize([_seeded(1234)])[0]
        assert len(compiled.loop.runner.compile_seconds) == 2  # buckets 1 and 8, compiled
        for w, g in zip(want, got, strict=True):
            assert g.frames == w.frames == 20
            np.testing.assert_array_equal(g.extra["codes"], w.extra["codes"])
        np.testing.assert_array_equal(alone.extra["codes"], got[2].extra["codes"])
        np.testing.assert_allclose(alone.audio, got[2].audio, atol=1e-6, rtol=0)
        assert not np.array_equal(got[3].extra["codes"], got[2].extra["codes"])
    finally:
        eager.close()
        compiled.close()
        torch._dynamo.reset()


def test_counter_noise_depends_on_seed_frame_and_level_only():
    lo, hi = (torch.tensor([v]) for v in split_seed(2**40 + 12345))
    frame = torch.tensor([3])
    alone = counter_noise(lo, hi, frame, 15, 2048, level0=1)
    rows = counter_noise(torch.cat([lo, lo + 1, lo]), torch.cat([hi, hi, hi]),
                         torch.tensor([3, 3, 4]), 15, 2048, level0=1)
    assert torch.equal(rows[0], alone[0])  # the same in any batch, any row
    assert not torch.equal(rows[1], alone[0]) and not torch.equal(rows[2], alone[0])
    assert not torch.equal(alone[0, 0], alone[0, 1])  # levels differ
    assert (alone > 0).all() and abs(float(alone.mean()) - 1.0) < 0.02  # Exp(1)
    u = uniform(torch.tensor([0, 2**31, 2**32 - 1]))
    assert (u > 0).all() and (u < 1).all()  # never noise 0 (a masked token) or infinite


def test_memory_plan_formula():
    # the 1.7B talker in bf16: 28 layers x 8 kv heads x 128 x 2 (k, v) x 2 B + a 2048-wide row
    tc = SimpleNamespace(num_hidden_layers=28, num_key_value_heads=8, head_dim=128,
                         hidden_size=2048, num_attention_heads=16)
    bpt = kv_bytes_per_token(tc, torch.bfloat16)
    assert bpt == 2 * 28 * 8 * 128 * 2 + 2048 * 2 == 118_784
    free = 100 * 2**30
    tokens = int(free * 0.9) // bpt
    assert slots_for(free, 0.9, bpt, max_slots=1024, max_context=4096) == (tokens // 4096, 4096)
    assert slots_for(free, 0.9, bpt, max_slots=16, max_context=4096) == (16, 4096)
    assert slots_for(2**30, 0.1, bpt, max_slots=16, max_context=4096) == (1, 2**30 // 10 // bpt)


def test_memory_plan_is_in_model_info_and_matches_the_cache(tiny_models_dir, small):
    runner = small.loop.runner
    plan = small.info.memory_plan
    assert plan["slots"] == runner.slots == 2 and plan["context_tokens"] == runner.context == 128
    assert plan["bytes_per_token"] == runner.bytes_per_token()
    planned = _engine(tiny_models_dir, model=small.model, memory_fraction=0.01, max_slots=8)
    try:
        p = planned.info.memory_plan
        assert p["free_bytes"] > 0 and 1 <= p["slots"] <= 8
        assert planned.loop.capacity == p["slots"]
    finally:
        planned.close()


def test_input_that_cannot_fit_the_context_is_refused_naming_input(small):
    long = SynthesisRequest(text=TEXT * 3, speaker="vivian", max_new_tokens=200)
    with pytest.raises(UnsupportedValueError) as info:
        small.synthesize([long])
    assert info.value.param == "input"
    ok = small.synthesize([SynthesisRequest(text="Hi.", speaker="vivian", max_new_tokens=5)])[0]
    assert ok.frames >= 1


def _tone(seconds: float = 2.0, sr: int = 16_000) -> tuple[np.ndarray, int]:
    t = np.arange(int(seconds * sr)) / sr
    wav = 0.3 * np.sin(2 * np.pi * 180 * t) + 0.05 * np.random.default_rng(0).standard_normal(t.size)
    return wav.astype(np.float32), sr


def test_batched_prefill_of_four_admissions_equals_one_by_one(tiny_models_dir, small):
    engine = _engine(tiny_models_dir, model=small.model, max_slots=4)
    try:
        reqs = [SynthesisRequest(text=t, speaker=sp, max_new_tokens=13, min_frames=12)
                for t, sp in ((TEXT, "vivian"), ("Hi.", "ryan"), (TEXT * 2, "eric"),
                              ("Numbers 1 2 3.", "serena"))]
        alone = [engine.synthesize([r])[0] for r in reqs]
        together = engine.synthesize(reqs)  # admitted at one step boundary: one prefill
        assert engine.loop.loop_stats.admitted == 8
        for a, b in zip(alone, together, strict=True):
            np.testing.assert_array_equal(a.extra["codes"], b.extra["codes"])
    finally:
        engine.close()


def test_long_prompt_is_prefilled_in_chunks_between_the_running_streams_steps(tiny_models_dir):
    """A clone prompt with reference codes (~45 tokens), prefill budget 16: it goes in over
    3 steps while a running stream keeps making a frame at every step; its frames equal an
    unchunked prefill's."""
    whole = _engine(tiny_models_dir, ModelKind.BASE, max_slots=2)
    chunked = _engine(tiny_models_dir, ModelKind.BASE, model=whole.model, max_slots=2,
                      prefill_chunk_tokens=16)
    try:
        icl = whole.build_voice_prompt(*_tone(), ref_text="Reference words here.")
        clone = SynthesisRequest(text=TEXT, voice_prompt=icl, max_new_tokens=11, min_frames=10)
        runner_up = SynthesisRequest(text="Keep talking.", voice_prompt=icl, max_new_tokens=60,
                                     min_frames=59)
        want = whole.synthesize([clone])[0]
        loop = chunked.loop
        frames_at_step: list[int] = []
        stream = chunked.stream(runner_up)
        next(stream)  # the running stream is stepping
        orig = loop.observer.on_step
        loop.observer.on_step = lambda n, s: frames_at_step.append(n)
        try:
            got = chunked.synthesize([clone])[0]
        finally:
            loop.observer.on_step = orig
            stream.close()
        np.testing.assert_array_equal(got.extra["codes"], want.extra["codes"])
        # every loop pass stepped the running stream: the chunks never held it back
        ones = frames_at_step.index(2) if 2 in frames_at_step else len(frames_at_step)
        assert ones >= 3 and all(n == 1 for n in frames_at_step[:ones])
    finally:
        whole.close()
        chunked.close()


@pytest.mark.parametrize("kind", [ModelKind.BASE, ModelKind.VOICE_DESIGN],
                         ids=["base", "voice_design"])
def test_compiled_step_equals_eager_for_the_other_kinds(tiny_models_dir, kind):
    """The other model kinds differ in their prompts (a description; a clone prompt with
    reference codes): through the compiled step their frames are the eager step's too,
    greedy and seeded, in a batch of two."""
    eager = _engine(tiny_models_dir, kind, max_slots=2, max_context_tokens=128)
    compiled = _engine(tiny_models_dir, kind, model=eager.model, max_slots=2,
                       max_context_tokens=128, compile="compile", batch_buckets=(2,))
    if kind == ModelKind.VOICE_DESIGN:
        voice = {"instruct": "A calm, low voice."}
    else:
        t = np.arange(24_000, dtype=np.float32) / 24_000
        tone = (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
        voice = {"voice_prompt": eager.build_voice_prompt(
            tone, 24_000, ref_text="Reference words here.")}
    batch = [SynthesisRequest(text=TEXT, max_new_tokens=13, min_frames=12, **voice),
             SynthesisRequest(text="Hello there.", seed=7, max_new_tokens=13, min_frames=12,
                              sampling=SamplingParams(do_sample=True), **voice)]
    try:
        compiled.loop.runner.compile_backend = "eager"
        want = eager.synthesize(batch)
        got = compiled.synthesize(batch)
        assert compiled.loop.runner.compile_seconds  # the step ran compiled
        for w, g in zip(want, got, strict=True):
            assert g.frames == w.frames == 12
            np.testing.assert_array_equal(g.extra["codes"], w.extra["codes"])
    finally:
        eager.close()
        compiled.close()
        torch._dynamo.reset()
