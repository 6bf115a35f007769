"""TTSEngine on the tiny checkpoints: info, synthesis, seeding, batching, validation."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from deployments.engine import (
    MODEL_SAMPLE_RATE,
    ModelKind,
    SynthesisRequest,
    TTSEngine,
    VoicePrompt,
)

LANGUAGES = {"chinese", "english", "japanese", "korean", "german", "french", "russian",
             "portuguese", "spanish", "italian"}
TEXT = "Hello world, this is a short test."
FRAME = 1920  # samples per 12.5 Hz codec frame at 24 kHz


@pytest.fixture(scope="module")
def reference() -> tuple[np.ndarray, int]:
    sr = 16_000
    t = np.arange(2 * sr) / sr
    wav = 0.3 * np.sin(2 * np.pi * 180 * t) + 0.05 * np.random.default_rng(0).standard_normal(t.size)
    return wav.astype(np.float32), sr


@pytest.fixture(scope="module")
def icl_prompt(base: TTSEngine, reference) -> VoicePrompt:
    return base.build_voice_prompt(*reference, ref_text="Reference words here.")


@pytest.fixture(scope="module")
def xvec_prompt(base: TTSEngine, reference) -> VoicePrompt:
    return base.build_voice_prompt(*reference, x_vector_only=True)


def _assert_audio(result, max_new_tokens: int) -> None:
    a = result.audio
    assert a.dtype == np.float32 and a.ndim == 1 and a.size > 0
    assert np.isfinite(a).all() and np.abs(a).max() <= 1.0
    assert np.abs(a).max() > 1e-3  # audible noise, not silence
    assert result.sample_rate == MODEL_SAMPLE_RATE
    assert 1 <= result.frames <= max_new_tokens - 1
    assert result.frames * FRAME <= a.size < (result.frames + 1) * FRAME
    assert result.generation_seconds > 0


# ------------------------------------------------------------------ info
def test_info_is_read_from_the_checkpoint(cv: TTSEngine, vd: TTSEngine, base: TTSEngine) -> None:
    assert (cv.info.kind, vd.info.kind, base.info.kind) == tuple(ModelKind)
    assert set(cv.info.speakers) == {"serena", "vivian", "uncle_fu", "ryan", "aiden",
                                     "ono_anna", "sohee", "eric", "dylan"}
    assert cv.info.dialect_speakers == {"eric": "sichuan_dialect", "dylan": "beijing_dialect"}
    for e in (cv, vd, base):
        assert set(e.info.languages) == LANGUAGES | {"auto"}
        assert e.info.sample_rate == MODEL_SAMPLE_RATE
        assert (e.info.device, e.info.dtype, e.info.model_size) == ("cpu", "float32", "tiny")
    assert vd.info.speakers == () and base.info.speakers == ()
    assert cv.default_max_new_tokens == 48  # from the checkpoint's generation_config.json


# ------------------------------------------------------------------ each kind
def test_custom_voice_synthesizes(cv: TTSEngine) -> None:
    [r] = cv.synthesize([SynthesisRequest(text=TEXT, speaker="Vivian", language="English")])
    _assert_audio(r, 48)


def test_voice_design_synthesizes(vd: TTSEngine) -> None:
    [r] = vd.synthesize([SynthesisRequest(text=TEXT, instruct="A calm, low male voice.",
                                          max_new_tokens=16)])
    _assert_audio(r, 16)


def test_voice_clone_icl(base: TTSEngine, icl_prompt: VoicePrompt) -> None:
    assert icl_prompt.icl_mode and not icl_prompt.x_vector_only_mode
    assert icl_prompt.ref_code is not None and icl_prompt.ref_code.shape == (25, 16)
    assert icl_prompt.ref_code.dtype == np.int64
    assert icl_prompt.ref_spk_embedding.shape == (64,)
    assert icl_prompt.ref_spk_embedding.dtype == np.float32
    assert icl_prompt.ref_text == "Reference words here."
    [r] = base.synthesize([SynthesisRequest(text=TEXT, language="english",
                                            voice_prompt=icl_prompt, max_new_tokens=16)])
    _assert_audio(r, 16)


def test_voice_clone_x_vector_only(base: TTSEngine, xvec_prompt: VoicePrompt) -> None:
    assert xvec_prompt.ref_code is None and xvec_prompt.x_vector_only_mode
    rs = base.synthesize([SynthesisRequest(text=TEXT, voice_prompt=xvec_prompt, max_new_tokens=12),
                          SynthesisRequest(text="Two.", voice_prompt=xvec_prompt, max_new_tokens=12)])
    for r in rs:
        _assert_audio(r, 12)


def test_max_new_tokens_is_capped_by_config(tiny_engine) -> None:
    e = tiny_engine(ModelKind.VOICE_DESIGN, max_new_tokens=6)
    assert e.default_max_new_tokens == 6
    [r] = e.synthesize([SynthesisRequest(text=TEXT, instruct="Bright.", max_new_tokens=500)])
    assert r.frames <= 5 and r.extra["max_new_tokens"] == 6


# ------------------------------------------------------------------ seeds and batching
def test_same_seed_same_audio_different_seed_different(cv: TTSEngine) -> None:
    req = SynthesisRequest(text=TEXT, speaker="ryan", seed=123, max_new_tokens=16)
    a, b, c = cv.synthesize([req, req, SynthesisRequest(**{**req.__dict__, "seed": 7})])
    assert np.array_equal(a.audio, b.audio)
    assert a.audio.size != c.audio.size or not np.array_equal(a.audio, c.audio)


def test_seeded_request_in_mixed_batch_equals_alone(vd: TTSEngine) -> None:
    seeded = SynthesisRequest(text=TEXT, instruct="Bright.", seed=42, max_new_tokens=16)
    [alone] = vd.synthesize([seeded])
    mixed = vd.synthesize([
        SynthesisRequest(text="Other words.", instruct="Low."),
        seeded,
        SynthesisRequest(text="Third.", instruct="Fast.", max_new_tokens=8),
    ])
    assert np.array_equal(mixed[1].audio, alone.audio)
    assert mixed[2].frames <= 7  # results come back in request order


def test_greedy_batch_equals_requests_alone(tiny_engine) -> None:
    e = tiny_engine(ModelKind.CUSTOM_VOICE, do_sample=False)
    reqs = [SynthesisRequest(text=TEXT, speaker="vivian", language="english", max_new_tokens=16),
            SynthesisRequest(text="Second one.", speaker="Eric", instruct="Very happy.",
                             max_new_tokens=16),
            SynthesisRequest(text="The quick brown fox.", speaker="aiden", max_new_tokens=16)]
    batched = e.synthesize(reqs)
    assert [r.extra["batch_size"] for r in batched] == [3, 3, 3]
    for req, b in zip(reqs, batched, strict=True):
        [alone] = e.synthesize([req])
        assert alone.audio.size == b.audio.size
        assert np.abs(alone.audio - b.audio).max() < 1e-4


def test_concurrent_callers_are_serialised(vd: TTSEngine) -> None:
    req = SynthesisRequest(text=TEXT, instruct="Bright.", seed=5, max_new_tokens=8)
    [expected] = vd.synthesize([req])
    out: list = []
    threads = [threading.Thread(target=lambda: out.extend(vd.synthesize([req])))
               for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(out) == 3 and all(np.array_equal(r.audio, expected.audio) for r in out)
