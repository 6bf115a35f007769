"""Fixtures of the Ray-free unit tests: engines on the tiny checkpoints, one per module."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from deployments.engine import TTSEngine
from deployments.engine.types import EngineConfig, ModelKind


@pytest.fixture(scope="session")
def tiny_engine(tiny_models_dir: Path) -> Callable[..., TTSEngine]:
    """Load a tiny checkpoint of `kind` with EngineConfig overrides (no warm-up)."""

    def load(kind: ModelKind, **config) -> TTSEngine:
        return TTSEngine.load(
            EngineConfig(model=str(tiny_models_dir / kind.value), warmup=False, **config)
        )

    return load


@pytest.fixture(scope="module")
def cv(tiny_engine) -> TTSEngine:
    return tiny_engine(ModelKind.CUSTOM_VOICE)


@pytest.fixture(scope="module")
def vd(tiny_engine) -> TTSEngine:
    return tiny_engine(ModelKind.VOICE_DESIGN)


@pytest.fixture(scope="module")
def base(tiny_engine) -> TTSEngine:
    return tiny_engine(ModelKind.BASE)
