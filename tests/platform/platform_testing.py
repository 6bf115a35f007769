"""Helpers shared by the platform tests (fixtures are in conftest.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from deployments.engine.types import VoicePrompt
from serve_app.platform.config import JobArgs, PlatformArgs
from serve_app.platform.crypto import generate_key

TRANSCRIPT = "a transcript nobody else may read"


def platform_args(database_url: str, data_dir: Path, **overrides) -> PlatformArgs:
    values = {
        "data_dir": str(data_dir),
        "database_url": database_url,
        "voice_encryption_keys": generate_key(),
        "api_key_pepper": "test-pepper",
        "admin_token": "test-admin-token",
        "auth_cache_s": 0,
        "jobs": JobArgs(heartbeat_s=0.05, poll_interval_s=0.05, segment_chars=40,
                        webhook_backoff_s=0.01, webhook_allow_private_hosts=True),
    }
    values.update(overrides)
    return PlatformArgs(**values)


def make_prompt(seed: int = 0, icl: bool = True) -> VoicePrompt:
    rng = np.random.default_rng(seed)
    return VoicePrompt(
        ref_spk_embedding=rng.standard_normal(1024).astype(np.float32),
        ref_code=rng.integers(0, 2048, (40, 16)).astype(np.int64) if icl else None,
        ref_text=TRANSCRIPT if icl else None,
        x_vector_only_mode=not icl,
    )
