"""Usage metering: one durable record per request, the record billing relies on.

`record` is idempotent on the request id (INSERT ... ON CONFLICT DO NOTHING), so a retry
after a lost reply cannot count a request twice, and concurrent writers never lose one.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from serve_app.platform.db import Database
from serve_app.platform.errors import InvalidRequest
from serve_app.platform.models import UsageRecordRow, utcnow

UsageStatus = Literal["ok", "failed", "cancelled"]


class UsageRecord(BaseModel):
    """What one request used (written once, when it finishes)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    request_id: str = Field(min_length=1, max_length=64)
    tenant_id: str
    api_key_id: str | None = None
    model: str = Field(description="Deployment: CustomVoice, VoiceDesign or VoiceClone")
    endpoint: str = Field(description="Endpoint family (see keys.ENDPOINTS)")
    voice: str | None = Field(None, description="Preset speaker or saved voice id")
    characters: int = Field(0, ge=0)
    audio_seconds: float = Field(0.0, ge=0)
    processing_ms: int = Field(0, ge=0)
    streamed: bool = False
    status: UsageStatus = "ok"
    created_at: datetime | None = None


@dataclass(frozen=True)
class UsageSummary:
    tenant_id: str
    start: datetime
    end: datetime
    requests: int
    characters: int
    audio_seconds: float
    processing_ms: int
    by_model: dict[str, dict[str, float]]
    by_status: dict[str, int]

    def as_dict(self) -> dict:
        return {
            "tenant_id": self.tenant_id, "start": self.start.isoformat(),
            "end": self.end.isoformat(), "requests": self.requests,
            "characters": self.characters, "audio_seconds": round(self.audio_seconds, 3),
            "processing_ms": self.processing_ms, "by_model": self.by_model,
            "by_status": self.by_status,
        }


def period_bounds(period: str, now: datetime | None = None) -> tuple[datetime, datetime]:
    """[start, end) in UTC of `day`, `month` (the current ones), `YYYY-MM` or `YYYY-MM-DD`."""
    now = now or utcnow()
    try:
        if period == "day":
            start = now.replace(hour=0, minute=0, second=0, microsecond=0)
            return start, start + timedelta(days=1)
        if period == "month":
            period = now.strftime("%Y-%m")
        if len(period) == 7:
            start = datetime.strptime(period, "%Y-%m").replace(tzinfo=UTC)
            end = start.replace(year=start.year + 1, month=1) if start.month == 12 else \
                start.replace(month=start.month + 1)
            return start, end
        start = datetime.strptime(period, "%Y-%m-%d").replace(tzinfo=UTC)
        return start, start + timedelta(days=1)
    except (ValueError, OverflowError) as exc:  # 9999-12-31 parses, its end overflows
        raise InvalidRequest(
            f"period must be day, month, YYYY-MM or YYYY-MM-DD, got {period!r}", param="period"
        ) from exc


class UsageMeter:
    def __init__(self, db: Database):
        self._db = db

    def record(self, usage: UsageRecord) -> bool:
        """Store the record; False if this request id was already recorded."""
        values = usage.model_dump()
        values["created_at"] = values["created_at"] or utcnow()
        insert = pg_insert if self._db.is_postgresql else sqlite_insert
        statement = insert(UsageRecordRow.__table__).values(**values).on_conflict_do_nothing(
            index_elements=["request_id"]
        ).returning(UsageRecordRow.__table__.c.id)
        with self._db.transaction() as session:
            return session.connection().execute(statement).first() is not None

    def summary(self, tenant_id: str, period: str = "month", now: datetime | None = None) -> UsageSummary:
        start, end = period_bounds(period, now)
        t = UsageRecordRow
        where = (t.tenant_id == tenant_id, t.created_at >= start, t.created_at < end)
        with self._db.transaction() as session:
            rows = session.execute(
                select(t.model, t.status, func.count(), func.coalesce(func.sum(t.characters), 0),
                       func.coalesce(func.sum(t.audio_seconds), 0.0),
                       func.coalesce(func.sum(t.processing_ms), 0))
                .where(*where).group_by(t.model, t.status)
            ).all()
        by_model: dict[str, dict[str, float]] = {}
        by_status: dict[str, int] = {}
        totals = [0, 0, 0.0, 0]
        for model, status, count, chars, audio, ms in rows:
            m = by_model.setdefault(model, {"requests": 0, "characters": 0, "audio_seconds": 0.0})
            m["requests"] += count
            m["characters"] += int(chars)
            m["audio_seconds"] = round(m["audio_seconds"] + float(audio), 3)
            by_status[status] = by_status.get(status, 0) + count
            totals = [totals[0] + count, totals[1] + int(chars), totals[2] + float(audio),
                      totals[3] + int(ms)]
        return UsageSummary(tenant_id, start, end, totals[0], totals[1], totals[2], totals[3],
                            by_model, by_status)
