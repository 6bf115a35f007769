"""Where a model deployment's checkpoint comes from.

`model` in a config is a hub id, a local directory, or `tiny:<kind>` (custom_voice,
voice_design, base): the project's own random-weight checkpoints, built on first use under
QTTS_TINY_MODELS_DIR (default ~/.cache/qwen3-tts-serve/tiny-models). The CPU profile uses the
latter, so it deploys anywhere with no weights to download.

Several replicas (and `qtts demo`) may ask for them at once: `ensure_tiny_models` serialises
the builders on one lock file next to the directory. That is the only lock: taking it here as
well (a second flock on the same file from the same process) deadlocked a fresh machine.
"""

from __future__ import annotations

from pathlib import Path

from deployments.engine.types import ModelKind

TINY_SCHEME = "tiny:"


def ensure_tiny_checkpoints(directory: Path | None = None) -> dict[ModelKind, Path]:
    """The tiny checkpoints, built once even when several processes start together."""
    from deployments.engine.tiny import ensure_tiny_models  # torch only if it must build

    return ensure_tiny_models(directory)


def resolve_checkpoint(model: str) -> str:
    """A path or hub id that `from_pretrained` can load."""
    if not model.startswith(TINY_SCHEME):
        return model
    kind_name = model[len(TINY_SCHEME):]
    try:
        kind = ModelKind(kind_name)
    except ValueError:
        allowed = ", ".join(TINY_SCHEME + k.value for k in ModelKind)
        raise ValueError(f"unknown tiny checkpoint {model!r}; allowed: {allowed}") from None
    return str(ensure_tiny_checkpoints()[kind])
