"""`tiny:<kind>` checkpoints resolve on a machine that has none yet (issue 8, item 1).

`resolve_checkpoint` (what every model replica calls) and `qtts demo` used to take an flock
on `.tiny-models.lock` and then let `ensure_tiny_models` take a second one on the same file
through another descriptor: on a fresh machine the process waited on itself forever. The
tests' own fixture builds the checkpoints another way, so only a fresh directory shows it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from deployments.checkpoints import resolve_checkpoint

REPO = Path(__file__).resolve().parents[2]


def test_resolve_checkpoint_on_a_fresh_directory_gets_past_the_lock_and_builds(tmp_path):
    """A fresh QTTS_TINY_MODELS_DIR: the process must reach the build (its temp directory
    appears next to the target) instead of blocking on the lock file. The whole build takes
    ~25 s, and the e2e tier runs it in full from a fresh HOME, so this stops once the
    build has started."""
    root = tmp_path / "tiny-models"
    env = {**os.environ, "QTTS_TINY_MODELS_DIR": str(root), "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-c",
         "from deployments.checkpoints import resolve_checkpoint; "
         "print(resolve_checkpoint('tiny:base'))"],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120  # torch import on a busy 2-core box: seconds
        started = False
        while time.monotonic() < deadline and proc.poll() is None:
            if list(tmp_path.glob(".tiny-models.build-*")) or (root / "base").is_dir():
                started = True
                break
            time.sleep(0.2)
        if proc.poll() is not None:
            out, err = proc.communicate()
            assert proc.returncode == 0, err[-3000:]
            assert Path(out.strip()) == root / "base"
        else:
            assert started, "resolve_checkpoint never started building: blocked on the lock"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)


def test_resolve_checkpoint_of_a_built_directory_and_of_other_models(tiny_models_dir, monkeypatch):
    monkeypatch.setenv("QTTS_TINY_MODELS_DIR", str(tiny_models_dir))
    assert resolve_checkpoint("tiny:custom_voice") == str(tiny_models_dir / "custom_voice")
    assert resolve_checkpoint("Qwen/Qwen3-TTS-12Hz-1.7B-Base") == "Qwen/Qwen3-TTS-12Hz-1.7B-Base"
    with pytest.raises(ValueError, match="allowed: tiny:custom_voice"):
        resolve_checkpoint("tiny:nope")
