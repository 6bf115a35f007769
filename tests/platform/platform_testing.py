"""Helpers shared by the platform tests (fixtures are in conftest.py)."""

from __future__ import annotations

import threading
from collections import defaultdict
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
from sqlalchemy import select

from deployments.engine.types import VoicePrompt
from serve_app.platform.config import JobArgs, PlatformArgs
from serve_app.platform.crypto import generate_key
from serve_app.platform.models import UsageRecordRow, UsageTotalRow
from serve_app.platform.plans import PlanTerms
from serve_app.platform.pricing import TOTALS, month_bounds
from serve_app.platform.usage import UsageRecord
from serve_app.platform.voices import Consent

TRANSCRIPT = "a transcript nobody else may read"
#: A clone saved under `recorded` consent (consent=true, its time kept).
RECORDED = Consent("recorded")


def as_login(url: str, login: str) -> str:
    """`url` with another user (same server, database and options)."""
    from sqlalchemy.engine import make_url

    return make_url(url).set(username=login, password=None).render_as_string(hide_password=False)


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


class Receiver:
    """A local HTTP server answering with the given statuses in turn."""

    def __init__(self, statuses):
        self.statuses = list(statuses)
        self.received: list[tuple[dict, bytes]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.received.append((dict(self.headers), body))
                status = receiver.statuses.pop(0) if receiver.statuses else 200
                self.send_response(status)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


# --------------------------------------------------------------------- plans and usage
MARCH = datetime(2025, 3, 1, tzinfo=UTC)


def at(day: int, hour: int = 12) -> datetime:
    return datetime(2025, 3, day, hour, tzinfo=UTC)


def terms(**overrides) -> PlanTerms:
    base = {
        "requests_per_minute": 60, "max_concurrent": 4,
        "included": {"characters": 100, "audio_seconds": 60, "voice_clones": 1},
        "prices": {"base_monthly": 1900,
                   "per_1k_characters": {"CustomVoice": 200, "VoiceDesign": 300,
                                         "VoiceClone": 400},
                   "per_audio_minute": 50, "per_saved_voice": 500, "per_job": 25},
        "overage": "bill",
    }
    base.update(overrides)
    return PlanTerms.model_validate(base)


def record(platform, tenant_id: str, request_id: str, when: datetime, *, model="CustomVoice",
           characters=0, audio_seconds=0.0, operation="synthesis"):
    return platform.usage.record_priced(UsageRecord(
        request_id=request_id, tenant_id=tenant_id, model=model, endpoint="speech",
        characters=characters, audio_seconds=audio_seconds, operation=operation,
        created_at=when))


def rows_added_up(session) -> dict[tuple, tuple[int, ...]]:
    """What the usage rows add up to, per tenant, month, plan version and model kind."""
    sums: dict[tuple, list[int]] = defaultdict(lambda: [0] * len(TOTALS))
    for r in session.scalars(select(UsageRecordRow)):
        key = (r.tenant_id, month_bounds(r.created_at)[0], r.plan_version_id or "", r.model)
        for i, amount in enumerate((r.characters, r.audio_ms, int(r.operation == "voice"),
                                    r.billable_characters, r.billable_audio_ms)):
            sums[key][i] += amount
    return {key: tuple(amounts) for key, amounts in sums.items()}


def stored_totals(session) -> dict[tuple, tuple[int, ...]]:
    """What `usage_totals` holds, keyed as `rows_added_up`."""
    return {(t.tenant_id, t.month, t.plan_version_id, t.model):
            tuple(getattr(t, name) for name in TOTALS)
            for t in session.scalars(select(UsageTotalRow))}
