"""Environment variables with the seed's names fill in what a config leaves unset."""

from __future__ import annotations

import pytest

from serve_app.app.args import AppArgs
from serve_app.app.settings import ENVIRONMENT, apply_environment

BASE = {"custom_voice": {"engine": {"model": "a/b"}}}


def test_environment_fills_unset_fields():
    args = apply_environment(AppArgs.model_validate(BASE), {
        "DEVICE": "cuda:1", "TORCH_DTYPE": "float16", "ENABLE_FLASH_ATTENTION": "false",
        "MAX_CONCURRENT": "7", "ENABLE_CACHE": "0", "CACHE_SIZE": "9", "SAMPLE_RATE": "16000",
        "OUTPUT_FORMAT": "mp3", "CORS_ORIGINS": "https://a.example, https://b.example",
    })
    engine = args.custom_voice.engine
    assert (engine.device, engine.dtype, engine.attn_implementation) == ("cuda:1", "float16", "sdpa")
    assert args.ingress.max_concurrent == 7 and args.ingress.cache_enabled is False
    assert args.ingress.cache_size == 9 and args.audio.default_sample_rate == 16000
    assert args.audio.default_format.value == "mp3"
    assert args.ingress.cors_origins == ["https://a.example", "https://b.example"]


def test_config_values_win_over_environment():
    args = AppArgs.model_validate({"custom_voice": {"engine": {"model": "a/b", "device": "cpu"}}})
    assert apply_environment(args, {"DEVICE": "cuda", "CUSTOM_VOICE_MODEL_ID": "x/y"}) \
        .custom_voice.engine.device == "cpu"


def test_model_id_variables_add_model_deployments():
    args = apply_environment(AppArgs(), {"MODEL_ID": "seed/model", "VOICE_CLONE_MODEL_ID": "c/d",
                                         "DEVICE": "cpu"})
    assert args.custom_voice.engine.model == "seed/model"
    assert args.voice_clone.engine.model == "c/d" and args.voice_clone.engine.device == "cpu"
    assert args.voice_design is None  # DEVICE alone adds no model


def test_a_bad_value_names_the_variable():
    with pytest.raises(ValueError, match="ENABLE_CACHE"):
        apply_environment(AppArgs(), {"ENABLE_CACHE": "maybe"})


def test_every_variable_is_documented():
    doc = (__import__("pathlib").Path(__file__).resolve().parents[2] / "docs" / "configuration.md")
    text = doc.read_text()
    for name in ENVIRONMENT:
        assert f"`{name}`" in text, name


def test_wyoming_settings_come_from_the_environment_and_it_is_off_by_default():
    assert not AppArgs().wyoming.enabled and AppArgs().wyoming.port == 10200
    args = apply_environment(AppArgs(), {"WYOMING_ENABLED": "true", "WYOMING_PORT": "10300",
                                         "WYOMING_TENANT": "kitchen", "WYOMING_ZEROCONF": "1",
                                         "WYOMING_SAMPLE_RATE": "16000"})
    wyoming = args.wyoming
    assert wyoming.enabled and wyoming.zeroconf and wyoming.port == 10300
    assert (wyoming.tenant, wyoming.sample_rate) == ("kitchen", 16000)
    assert wyoming.address() == "tcp://0.0.0.0:10300"
