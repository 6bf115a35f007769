"""TTSEngine error paths: caller mistakes are UnsupportedValueError, model failures EngineError."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from deployments.engine import (
    EngineConfig,
    EngineError,
    SynthesisRequest,
    TTSEngine,
    UnsupportedValueError,
    VoicePrompt,
)

TEXT = "Hello world."


def _engine(path: Path, **kw) -> TTSEngine:
    return TTSEngine.load(EngineConfig(model=str(path), warmup=False, **kw))


@pytest.fixture(scope="module")
def cv(tiny_models_dir: Path) -> TTSEngine:
    return _engine(tiny_models_dir / "custom_voice")


@pytest.fixture(scope="module")
def vd(tiny_models_dir: Path) -> TTSEngine:
    return _engine(tiny_models_dir / "voice_design")


@pytest.fixture(scope="module")
def base(tiny_models_dir: Path) -> TTSEngine:
    return _engine(tiny_models_dir / "base")


def _raises(engine: TTSEngine, req: SynthesisRequest, param: str) -> UnsupportedValueError:
    with pytest.raises(UnsupportedValueError) as ei:
        engine.validate(req)
    assert ei.value.param == param
    with pytest.raises(UnsupportedValueError):
        engine.synthesize([req])
    return ei.value


def test_unknown_speaker_lists_the_speakers(cv: TTSEngine) -> None:
    err = _raises(cv, SynthesisRequest(text=TEXT, speaker="nobody"), "speaker")
    assert set(err.allowed) == set(cv.info.speakers) and "vivian" in str(err)
    assert _raises(cv, SynthesisRequest(text=TEXT), "speaker").allowed == list(cv.info.speakers)


def test_case_insensitive_ids(cv: TTSEngine) -> None:
    cv.validate(SynthesisRequest(text=TEXT, speaker="Uncle_Fu", language="ENGLISH"))


def test_unknown_language_lists_the_languages(cv: TTSEngine, base: TTSEngine) -> None:
    err = _raises(cv, SynthesisRequest(text=TEXT, speaker="vivian", language="klingon"),
                  "language")
    assert set(err.allowed) == set(cv.info.languages) and "auto" in err.allowed
    # dialects are spoken through their speakers, not requested as languages
    _raises(cv, SynthesisRequest(text=TEXT, speaker="eric", language="sichuan_dialect"),
            "language")


def test_empty_text(cv: TTSEngine) -> None:
    _raises(cv, SynthesisRequest(text="  ", speaker="vivian"), "text")


def test_kind_specific_fields(cv: TTSEngine, vd: TTSEngine, base: TTSEngine) -> None:
    _raises(vd, SynthesisRequest(text=TEXT, speaker="vivian", instruct="Calm."), "speaker")
    _raises(vd, SynthesisRequest(text=TEXT), "instruct")
    _raises(vd, SynthesisRequest(text=TEXT, instruct="   "), "instruct")
    _raises(base, SynthesisRequest(text=TEXT), "voice_prompt")
    _raises(base, SynthesisRequest(text=TEXT, speaker="vivian"), "speaker")
    prompt = VoicePrompt(ref_spk_embedding=np.zeros(64, np.float32), x_vector_only_mode=True)
    _raises(base, SynthesisRequest(text=TEXT, voice_prompt=prompt, instruct="Happy."), "instruct")
    _raises(cv, SynthesisRequest(text=TEXT, speaker="vivian", voice_prompt=prompt),
            "voice_prompt")
    _raises(cv, SynthesisRequest(text=TEXT, speaker="vivian", max_new_tokens=1),
            "max_new_tokens")
    _raises(cv, SynthesisRequest(text=TEXT, speaker="vivian", seed=-1), "seed")


def test_voice_prompt_must_fit_the_model(base: TTSEngine) -> None:
    wrong_dim = VoicePrompt(ref_spk_embedding=np.zeros(1024, np.float32), x_vector_only_mode=True)
    _raises(base, SynthesisRequest(text=TEXT, voice_prompt=wrong_dim), "voice_prompt")
    no_code = VoicePrompt(ref_spk_embedding=np.zeros(64, np.float32), ref_text="hi")
    _raises(base, SynthesisRequest(text=TEXT, voice_prompt=no_code), "voice_prompt")
    bad_code = VoicePrompt(ref_spk_embedding=np.zeros(64, np.float32), ref_text="hi",
                           ref_code=np.full((5, 16), 5000, np.int64))
    _raises(base, SynthesisRequest(text=TEXT, voice_prompt=bad_code), "voice_prompt")


def test_instruct_on_0b6_custom_voice_is_an_error(tiny_models_dir: Path, tmp_path: Path) -> None:
    # qwen-tts silently drops instruct on the 0.6B CustomVoice: the engine refuses instead
    ckpt = tmp_path / "cv-0b6"
    shutil.copytree(tiny_models_dir / "custom_voice", ckpt)
    cfg = json.loads((ckpt / "config.json").read_text())
    (ckpt / "config.json").write_text(json.dumps({**cfg, "tts_model_size": "0b6"}))
    e = _engine(ckpt)
    assert e.info.model_size == "0b6"
    _raises(e, SynthesisRequest(text=TEXT, speaker="vivian", instruct="Very happy."), "instruct")
    e.validate(SynthesisRequest(text=TEXT, speaker="vivian"))


def test_nothing_runs_if_one_request_is_bad(cv: TTSEngine, monkeypatch) -> None:
    calls = []
    monkeypatch.setattr(cv.model, "generate_custom_voice", lambda *a, **k: calls.append(1))
    with pytest.raises(UnsupportedValueError):
        cv.synthesize([SynthesisRequest(text=TEXT, speaker="vivian"),
                       SynthesisRequest(text=TEXT, speaker="nobody")])
    assert calls == []


def test_model_failure_is_engine_error(cv: TTSEngine, base: TTSEngine, monkeypatch) -> None:
    def fail(*a, **k):
        raise RuntimeError("CUDA out of memory")

    monkeypatch.setattr(cv.model, "generate_custom_voice", fail)  # reference backend
    monkeypatch.setattr(cv.model.model.talker.codec_head, "forward", fail)  # batched backend
    with pytest.raises(EngineError) as ei:
        cv.synthesize([SynthesisRequest(text=TEXT, speaker="vivian")])
    assert isinstance(ei.value.__cause__, RuntimeError)
    assert not isinstance(ei.value, ValueError)

    monkeypatch.setattr(base.model, "create_voice_clone_prompt", fail)
    with pytest.raises(EngineError):
        base.build_voice_prompt(np.zeros(24_000, np.float32), 24_000, x_vector_only=True)


def test_load_failure_is_engine_error(tmp_path: Path) -> None:
    with pytest.raises(EngineError):
        _engine(tmp_path / "missing")


# ------------------------------------------------------------------ build_voice_prompt
def test_icl_prompt_needs_ref_text(base: TTSEngine) -> None:
    wav = np.zeros(24_000, np.float32)
    for ref_text in (None, "", "  "):
        with pytest.raises(UnsupportedValueError) as ei:
            base.build_voice_prompt(wav, 24_000, ref_text=ref_text)
        assert ei.value.param == "ref_text" and "x_vector_only" in str(ei.value)


@pytest.mark.parametrize("audio", ["ref.wav", "https://example.com/a.wav", Path("/etc/passwd"),
                                   [0.0] * 24_000, b"RIFF"])
def test_prompt_audio_must_be_an_array(base: TTSEngine, audio) -> None:
    with pytest.raises(TypeError):
        base.build_voice_prompt(audio, 24_000, ref_text="hi")


def test_prompt_rate_and_shape(base: TTSEngine) -> None:
    wav = np.zeros(24_000, np.float32)
    with pytest.raises(TypeError):
        base.build_voice_prompt(wav, "24000", x_vector_only=True)
    with pytest.raises(TypeError):
        base.build_voice_prompt(np.zeros(24_000, np.int16), 24_000, x_vector_only=True)
    for bad in (np.zeros((24_000, 2), np.float32), np.zeros(100, np.float32)):
        with pytest.raises(UnsupportedValueError) as ei:
            base.build_voice_prompt(bad, 24_000, x_vector_only=True)
        assert ei.value.param == "reference_audio"


def test_prompt_needs_a_base_model(cv: TTSEngine) -> None:
    with pytest.raises(UnsupportedValueError) as ei:
        cv.build_voice_prompt(np.zeros(24_000, np.float32), 24_000, x_vector_only=True)
    assert ei.value.param == "reference_audio"


def test_warmup_each_kind(cv: TTSEngine, vd: TTSEngine, base: TTSEngine) -> None:
    for e in (cv, vd, base):
        e.warmup()
