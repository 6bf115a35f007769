"""Tiny random-weight checkpoints: built offline, loadable by qwen-tts, real preset ids."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from deployments.engine import ModelKind, ensure_tiny_models, load_presets
from deployments.engine.tiny import MARKER, build_tiny_models, read_marker

PRESETS = {"serena", "vivian", "uncle_fu", "ryan", "aiden", "ono_anna", "sohee", "eric", "dylan"}
LANGUAGES = {"chinese", "english", "japanese", "korean", "german", "french", "russian",
             "portuguese", "spanish", "italian"}


def _load(path: Path):
    import torch

    from deployments.engine.engine import import_qwen_tts

    qwen_tts = import_qwen_tts()
    return qwen_tts.Qwen3TTSModel.from_pretrained(str(path), device_map="cpu", dtype=torch.float32)


def test_layout_and_marker(tiny_models_dir: Path) -> None:
    marker = read_marker(tiny_models_dir)
    assert marker is not None and marker["version"] >= 1 and marker["seed"] == 0
    for kind in ModelKind:
        d = tiny_models_dir / kind.value
        for name in ("config.json", "generation_config.json", "model.safetensors",
                     "tokenizer_config.json", "speech_tokenizer/config.json",
                     "speech_tokenizer/model.safetensors",
                     "speech_tokenizer/preprocessor_config.json"):
            assert (d / name).is_file(), d / name
        cfg = json.loads((d / "config.json").read_text())
        assert cfg["tts_model_type"] == kind.value
        assert cfg["tts_model_size"] == "tiny"
        gen = json.loads((d / "generation_config.json").read_text())
        assert gen["max_new_tokens"] == 48


@pytest.mark.parametrize("kind", list(ModelKind))
def test_each_kind_loads_with_qwen_tts(tiny_models_dir: Path, kind: ModelKind) -> None:
    tts = _load(tiny_models_dir / kind.value)
    assert tts.model.tts_model_type == kind.value
    assert set(tts.get_supported_languages()) == LANGUAGES | {"auto"}
    assert (tts.model.speaker_encoder is not None) == (kind is ModelKind.BASE)
    if kind is not ModelKind.CUSTOM_VOICE:
        assert tts.get_supported_speakers() == []


def test_custom_voice_has_the_nine_presets_with_dialects(tiny_models_dir: Path) -> None:
    cfg = json.loads((tiny_models_dir / "custom_voice" / "config.json").read_text())
    talker = cfg["talker_config"]
    assert set(talker["spk_id"]) == PRESETS
    dialects = {k: v for k, v in talker["spk_is_dialect"].items() if v}
    assert dialects == {"eric": "sichuan_dialect", "dylan": "beijing_dialect"}
    # ids sit where the real ones do, re-based onto the tiny codebook (real - 2048 + C)
    codebook = talker["code_predictor_config"]["vocab_size"]
    assert talker["spk_id"]["vivian"] == 3065 - 2048 + codebook
    assert talker["spk_id"]["eric"] == 2875 - 2048 + codebook
    assert talker["vocab_size"] == codebook + 1024
    assert all(codebook <= v < codebook + 1024 for v in talker["spk_id"].values())
    tts = _load(tiny_models_dir / "custom_voice")
    assert set(tts.get_supported_speakers()) == PRESETS


def test_every_checkpoint_speaker_has_a_preset(tiny_models_dir: Path) -> None:
    cfg = json.loads((tiny_models_dir / "custom_voice" / "config.json").read_text())
    presets = load_presets()
    assert set(presets) == PRESETS
    assert set(cfg["talker_config"]["spk_id"]) <= set(presets)
    assert presets["eric"].dialect == "sichuan_dialect"
    assert presets["uncle_fu"].name == "Uncle_Fu"
    assert {p.gender for p in presets.values()} == {"female", "male"}
    assert all(p.native_language in LANGUAGES and p.description for p in presets.values())


def test_ensure_builds_once_and_rebuilds_without_marker(tmp_path: Path, monkeypatch) -> None:
    out = tmp_path / "tiny"
    paths = ensure_tiny_models(out)
    assert set(paths) == set(ModelKind) and all(p.is_dir() for p in paths.values())
    sentinel = out / "custom_voice" / "sentinel"
    sentinel.write_text("x")

    import deployments.engine.tiny as tiny

    def boom(*a, **k):
        raise AssertionError("must not rebuild")

    with monkeypatch.context() as m:
        m.setattr(tiny, "build_tiny_models", boom)
        assert ensure_tiny_models(out) == paths
    assert sentinel.exists()

    (out / MARKER).unlink()  # an interrupted build never wrote its marker
    ensure_tiny_models(out)
    assert (out / MARKER).is_file() and not sentinel.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tiny.build-")]


def test_build_refuses_to_replace_a_foreign_directory(tmp_path: Path) -> None:
    (tmp_path / "precious.txt").write_text("keep me")
    with pytest.raises(FileExistsError):
        build_tiny_models(tmp_path)
    assert (tmp_path / "precious.txt").read_text() == "keep me"


def test_default_dir_honours_env(monkeypatch, tmp_path: Path) -> None:
    from deployments.engine import default_tiny_models_dir

    monkeypatch.setenv("QTTS_TINY_MODELS_DIR", str(tmp_path / "x"))
    assert default_tiny_models_dir() == tmp_path / "x"
    monkeypatch.delenv("QTTS_TINY_MODELS_DIR")
    assert default_tiny_models_dir().parts[-2:] == ("qwen3-tts-serve", "tiny-models")
