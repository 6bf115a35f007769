"""Where a model deployment's checkpoint comes from.

`model` in a config is a hub id, a local directory, or `tiny:<kind>` (custom_voice,
voice_design, base): the project's own random-weight checkpoints, built on first use under
QTTS_TINY_MODELS_DIR (default ~/.cache/qwen3-tts-serve/tiny-models). The CPU profile uses the
latter, so it deploys anywhere with no weights to download.
"""

from __future__ import annotations

import fcntl
from pathlib import Path

from deployments.engine import ensure_tiny_models
from deployments.engine.tiny import default_tiny_models_dir
from deployments.engine.types import ModelKind

TINY_SCHEME = "tiny:"


def ensure_tiny_models_locked(directory: Path | None = None) -> dict[ModelKind, Path]:
    """Build the tiny checkpoints once even when several replicas start together."""
    directory = Path(directory or default_tiny_models_dir())
    directory.parent.mkdir(parents=True, exist_ok=True)
    with open(directory.parent / f".{directory.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
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
    return str(ensure_tiny_models_locked()[kind])
