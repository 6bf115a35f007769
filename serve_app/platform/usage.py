"""Usage metering: one durable record per request, the record billing relies on.

`record` is idempotent on the request id (INSERT ... ON CONFLICT DO NOTHING), so a retry
after a lost reply cannot count a request twice, and concurrent writers never lose one. Each
row is priced when it is written (serve_app.platform.pricing): its cost never changes after.
Besides syntheses, a saved voice and a submitted job are rows too (`operation`), so the
plan's per-voice and per-job prices and the included voice clones are metered the same way.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import Insert, func, select
from sqlalchemy.orm import Session

from serve_app.platform.db import Database, insert_of
from serve_app.platform.errors import InvalidRequest, LimitExceeded
from serve_app.platform.models import UsageRecordRow, utcnow
from serve_app.platform.plans import grant_at
from serve_app.platform.pricing import (
    Operation,
    Priced,
    add_to_totals,
    included_amounts,
    included_used,
    lock_tenant_usage,
    month_bounds,
    price_row,
)
from serve_app.platform.quota_alerts import open_alerts

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
    operation: Operation = Field("synthesis", description="synthesis | voice | job")
    created_at: datetime | None = None


@dataclass(frozen=True)
class Recorded:
    """A write's outcome: whether the row is new, and its pricing (with the included quotas
    before and after it, which the quota warnings read)."""

    recorded: bool
    priced: Priced
    alerts: int = 0  # quota warnings this row opened (serve_app.platform.quota_alerts)


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
    cost: int = 0
    currency: str = "USD"
    by_operation: dict[str, dict[str, int]] = field(default_factory=dict)
    plan: dict | None = None
    included: dict[str, dict[str, float | None]] | None = None

    def as_dict(self) -> dict:
        return {
            "tenant_id": self.tenant_id, "start": self.start.isoformat(),
            "end": self.end.isoformat(), "requests": self.requests,
            "characters": self.characters, "audio_seconds": round(self.audio_seconds, 3),
            "processing_ms": self.processing_ms, "by_model": self.by_model,
            "by_status": self.by_status, "currency": self.currency, "cost": self.cost,
            "by_operation": self.by_operation, "plan": self.plan, "included": self.included,
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


def _included(grant, used: dict[str, int]) -> dict[str, dict[str, float | None]]:
    """Each included quota: included, used and remaining (audio in seconds; null: unlimited)."""
    out: dict[str, dict[str, float | None]] = {}
    for quota, amount in included_amounts(grant).items():
        scale = 1000 if quota == "audio_seconds" else 1
        used_q = used[quota] / scale
        out[quota] = {"included": None if amount is None else amount / scale, "used": used_q,
                      "remaining": None if amount is None else max(0, amount - used[quota]) / scale}
    return out


@functools.cache
def _insert_usage(dialect: str) -> Insert:
    """INSERT of one usage row, its values bound when it runs (built once per dialect: it
    runs on every request); a request id already recorded is skipped and returns no id."""
    table = UsageRecordRow.__table__
    return insert_of(dialect)(table).on_conflict_do_nothing(
        index_elements=["request_id"]).returning(table.c.id)


class UsageMeter:
    def __init__(self, db: Database, currency: str = "USD"):
        self._db = db
        self.currency = currency

    def record(self, usage: UsageRecord) -> bool:
        """Store the record; False if this request id was already recorded."""
        return self.record_priced(usage).recorded

    def record_priced(self, usage: UsageRecord) -> Recorded:
        """Price and store the record, and open the quota warnings it crosses, in one
        transaction (its cost is final)."""
        return self.record_priced_many([usage])[0]

    def record_priced_many(self, rows: Sequence[UsageRecord]) -> list[Recorded]:
        """`record_priced` for several rows of one tenant, in order, in one transaction (a
        group commit: one BEGIN and one COMMIT for all of them). Each row is priced after
        the ones before it, exactly as if each were written alone; if any fails, none is."""
        tenants = {usage.tenant_id for usage in rows}
        if len(tenants) != 1:
            raise ValueError(f"one tenant's rows per transaction, got {len(tenants)}")
        with self._db.transaction(rows[0].tenant_id) as session:
            lock_tenant_usage(session, rows[0].tenant_id)  # once: held until the commit
            return [self._write(session, usage) for usage in rows]

    @staticmethod
    def _write(session: Session, usage: UsageRecord) -> Recorded:
        values = usage.model_dump()
        created = values["created_at"] or utcnow()
        # in UTC: the month it is priced and totalled in is a UTC month (pricing.month_bounds);
        # a naive time is refused by its column, as before
        values["created_at"] = created.astimezone(UTC) if created.tzinfo else created
        values["audio_ms"] = round(usage.audio_seconds * 1000)
        priced = price_row(session, tenant_id=usage.tenant_id, model=usage.model,
                           operation=usage.operation, characters=usage.characters,
                           audio_ms=values["audio_ms"], at=values["created_at"])
        recorded = session.connection().execute(
            _insert_usage(session.get_bind().dialect.name),
            {**values, **priced.columns()}).first() is not None
        if not recorded:
            return Recorded(False, priced)
        add_to_totals(session, tenant_id=usage.tenant_id, model=usage.model,
                      operation=usage.operation, characters=usage.characters,
                      audio_ms=values["audio_ms"], at=values["created_at"], priced=priced)
        return Recorded(True, priced, open_alerts(session, usage.tenant_id,
                                                  values["created_at"], priced))

    def require_voice_room(self, tenant_id: str, at: datetime) -> None:
        """429 naming the quota and its reset when the tenant's plan blocks past its included
        voice clones and this month's are used up."""
        with self._db.transaction(tenant_id) as session:
            grant = grant_at(session, tenant_id, at)
            if grant is None or grant.terms.overage != "block":
                return
            included = grant.terms.included.voice_clones
            start, end = month_bounds(at)
            if included is None or \
                    included_used(session, tenant_id, start)["voice_clones"] < included:
                return
        retry = max(1, math.ceil((end - at).total_seconds()))
        raise LimitExceeded(
            f"limit reached: {included} voice clones this month (plan {grant.plan_name!r}); "
            f"retry after {retry} s; the quota resets at {end.isoformat()}",
            code="quota_exceeded", param="voice_clones",
            headers={"Retry-After": str(retry), "X-RateLimit-Limit-Voice-Clones": str(included),
                     "X-RateLimit-Remaining-Voice-Clones": "0",
                     "X-RateLimit-Reset-Voice-Clones": str(retry)})

    def summary(self, tenant_id: str, period: str = "month", now: datetime | None = None) -> UsageSummary:
        start, end = period_bounds(period, now)
        t = UsageRecordRow
        where = (t.tenant_id == tenant_id, t.created_at >= start, t.created_at < end)
        with self._db.transaction(tenant_id) as session:
            rows = session.execute(
                select(t.model, t.status, func.count(), func.coalesce(func.sum(t.characters), 0),
                       func.coalesce(func.sum(t.audio_seconds), 0.0),
                       func.coalesce(func.sum(t.processing_ms), 0),
                       func.coalesce(func.sum(t.cost), 0))
                .where(*where, t.operation == "synthesis").group_by(t.model, t.status)
            ).all()
            operations = session.execute(
                select(t.operation, t.model, func.count(), func.coalesce(func.sum(t.cost), 0))
                .where(*where).group_by(t.operation, t.model)).all()
            plan, included = None, None
            if end - start > timedelta(days=1):  # a month: the plan's included quotas
                at = min(now or utcnow(), end - timedelta(microseconds=1))
                grant = grant_at(session, tenant_id, at)
                if grant is not None:
                    plan = {"name": grant.plan_name, "version": grant.version,
                            "overage": grant.terms.overage}
                    included = _included(grant, included_used(session, tenant_id,
                                                              month_bounds(start)[0]))
        by_model: dict[str, dict[str, float]] = {}
        by_status: dict[str, int] = {}
        totals = [0, 0, 0.0, 0]
        for model, status, count, chars, audio, ms, _cost in rows:
            m = by_model.setdefault(model, {"requests": 0, "characters": 0, "audio_seconds": 0.0,
                                            "cost": 0})
            m["requests"] += count
            m["characters"] += int(chars)
            m["audio_seconds"] = round(m["audio_seconds"] + float(audio), 3)
            by_status[status] = by_status.get(status, 0) + count
            totals = [totals[0] + count, totals[1] + int(chars), totals[2] + float(audio),
                      totals[3] + int(ms)]
        by_operation: dict[str, dict[str, int]] = {}
        cost = 0
        for operation, model, count, op_cost in operations:
            o = by_operation.setdefault(operation, {"count": 0, "cost": 0})
            o["count"] += count
            o["cost"] += int(op_cost)
            cost += int(op_cost)
            m = by_model.setdefault(model, {"requests": 0, "characters": 0, "audio_seconds": 0.0,
                                            "cost": 0})
            m["cost"] += int(op_cost)
        return UsageSummary(tenant_id, start, end, totals[0], totals[1], totals[2], totals[3],
                            by_model, by_status, cost, self.currency, by_operation, plan, included)
