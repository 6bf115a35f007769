"""Session-wide test setup: offline Hugging Face, bounded torch threads, tiny checkpoints.

Other fixtures live next to their tests (e.g. tests/graph/conftest.py).
"""

from __future__ import annotations

import os
import sys

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


#: pytest's exit status, kept at the session's end for `pytest_unconfigure`.
_EXIT_STATUS = pytest.StashKey[int]()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    session.config.stash[_EXIT_STATUS] = int(exitstatus)


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config: pytest.Config) -> None:
    """End the test process with pytest's exit status once every plugin has unconfigured,
    without the interpreter's finalization. Every test, fixture teardown and report is done
    by then. On stop 42's fresh-clone CI run the process segfaulted after printing "1618
    passed" (exit status 139, a red run): native teardown of the libraries the session
    loaded (torch, Ray's core worker, ...) at interpreter exit. It did not happen in two local
    runs of the same suite, and none of our code runs there. A run that never started a
    session (`--help`, a usage error) ends as usual."""
    status = config.stash.get(_EXIT_STATUS, None)
    if status is None:
        return
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)
