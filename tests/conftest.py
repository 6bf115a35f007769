"""Session-wide test setup: offline Hugging Face, bounded torch threads, tiny checkpoints.

Other fixtures live next to their tests (e.g. tests/graph/conftest.py).
"""

from __future__ import annotations

import os

# Set before anything imports transformers / huggingface_hub: nothing may be downloaded.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402

# One thread: the tiny models are overhead-bound (1 thread is as fast as 2), and with 2
# threads on a 2-core box any other busy process makes OpenMP spin (measured 0.7 s -> 26 s).
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tiny_models_dir() -> Path:
    """Root of the tiny random-weight checkpoints (custom_voice/, voice_design/, base/).

    Built once and cached across sessions under $QTTS_TINY_MODELS_DIR or
    ~/.cache/qwen3-tts-serve/tiny-models (rebuilt when the format version changes).
    """
    from deployments.engine.tiny import default_tiny_models_dir, ensure_tiny_models

    root = default_tiny_models_dir()
    ensure_tiny_models(root)
    return root
