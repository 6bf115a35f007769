"""Ray-free Qwen3-TTS engine: load a checkpoint, validate and synthesize, tiny test models.

The interface types are imported eagerly (cheap, no torch); `TTSEngine` and the tiny-model
builders import torch/qwen-tts, so they load on first access (PEP 562).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from deployments.engine.presets import Preset, load_presets
from deployments.engine.text_input import TextInput
from deployments.engine.types import (
    MODEL_SAMPLE_RATE,
    AudioChunk,
    EngineConfig,
    EngineError,
    ModelInfo,
    ModelKind,
    StreamCancelled,
    StreamChunking,
    SynthesisRequest,
    SynthesisResult,
    UnsupportedValueError,
    VoicePrompt,
)

if TYPE_CHECKING:
    from deployments.engine.engine import TTSEngine
    from deployments.engine.request import StreamStats
    from deployments.engine.streaming import AsyncSynthesisStream, SynthesisStream
    from deployments.engine.tiny import (
        build_tiny_models,
        default_tiny_models_dir,
        ensure_tiny_models,
    )

_LAZY = {
    "TTSEngine": "deployments.engine.engine",
    "SynthesisStream": "deployments.engine.streaming",
    "AsyncSynthesisStream": "deployments.engine.streaming",
    "StreamStats": "deployments.engine.request",
    "build_tiny_models": "deployments.engine.tiny",
    "ensure_tiny_models": "deployments.engine.tiny",
    "default_tiny_models_dir": "deployments.engine.tiny",
}

__all__ = [
    "MODEL_SAMPLE_RATE",
    "AsyncSynthesisStream",
    "AudioChunk",
    "EngineConfig",
    "EngineError",
    "ModelInfo",
    "ModelKind",
    "Preset",
    "StreamCancelled",
    "StreamChunking",
    "StreamStats",
    "SynthesisStream",
    "SynthesisRequest",
    "SynthesisResult",
    "TTSEngine",
    "TextInput",
    "UnsupportedValueError",
    "VoicePrompt",
    "build_tiny_models",
    "default_tiny_models_dir",
    "ensure_tiny_models",
    "load_presets",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
