"""Names clients may use: language codes, display names, OpenAI voices; errors list options."""

from __future__ import annotations

import pytest

from deployments.engine.presets import load_presets
from deployments.engine.types import ModelInfo, ModelKind
from serve_app.edge.api_errors import ApiError
from serve_app.synthesis import catalog
from serve_app.synthesis.cache import LRUCache, cache_key

INFO = ModelInfo(
    kind=ModelKind.CUSTOM_VOICE, model="m", speakers=tuple(load_presets()), dialect_speakers={},
    languages=("auto", *catalog.LANGUAGE_CODES.values()), sample_rate=24000, device="cpu",
    dtype="float32", model_size="tiny",
)


@pytest.mark.parametrize("value, expected", [
    ("zh", "chinese"), ("EN", "english"), ("Japanese", "japanese"), ("auto", "auto"), (None, "auto"),
])
def test_language_accepts_codes_names_and_auto(value, expected):
    assert catalog.resolve_language(value, INFO) == expected


def test_unknown_language_lists_codes_and_names():
    with pytest.raises(ApiError) as err:
        catalog.resolve_language("klingon", INFO)
    assert err.value.param == "language" and "zh" in err.value.message and "chinese" in err.value.message


@pytest.mark.parametrize("value", ["Vivian", "vivian", "VIVIAN", " Vivian "])
def test_speaker_is_case_insensitive(value):
    assert catalog.resolve_speaker(value, INFO) == "vivian"


def test_openai_voices_map_only_where_allowed():
    assert catalog.resolve_speaker("alloy", INFO, openai_names=True) == catalog.OPENAI_VOICES["alloy"]
    with pytest.raises(ApiError):
        catalog.resolve_speaker("alloy", INFO)  # the seed API takes preset names only


def test_every_openai_voice_maps_to_a_preset():
    assert set(catalog.OPENAI_VOICES.values()) <= set(load_presets())


def test_unknown_speaker_is_an_error_never_a_fallback():
    with pytest.raises(ApiError) as err:
        catalog.resolve_speaker("Nobody", INFO)
    assert err.value.status == 422 and "Uncle_Fu" in err.value.message


def test_cache_evicts_least_recently_used_and_key_covers_inputs():
    cache: LRUCache[int] = LRUCache(2)
    cache.put("a", 1)
    cache.put("b", 2)
    assert cache.get("a") == 1
    cache.put("c", 3)
    assert cache.get("b") is None and cache.get("a") == 1 and cache.get("c") == 3
    assert cache_key(text="x", seed=1) != cache_key(text="x", seed=2)
    assert cache_key(text="x", seed=1) == cache_key(seed=1, text="x")


def test_disabled_cache_keeps_nothing():
    cache: LRUCache[int] = LRUCache(0)
    cache.put("a", 1)
    assert cache.get("a") is None and len(cache) == 0
