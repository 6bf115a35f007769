"""The cost of one usage row, computed once, in the transaction that writes it.

A row is priced by the plan version in force for its tenant when it was written
(plans.grant_at). Its units past the month's included quota are billable: characters (at
the version's price per 1,000 characters of the row's model kind), audio milliseconds (per
audio minute), a saved voice past the included voice clones (per saved voice), a job (per
job). Money is integer minor units, and so that rounding never drifts, each meter is priced
on the period's running total: a row costs

    floor((billed_before + billed) * price / unit) - floor(billed_before * price / unit)

where `billed_before` counts the same tenant's billable units of the same meter and model
kind under the same plan version earlier in the month. The rows of a month
then add up to exactly the rounded-down price of its total: an invoice is a sum, never a
re-pricing. Writers of one tenant are serialized (a transaction-scoped advisory lock on
PostgreSQL; BEGIN IMMEDIATE on SQLite), so two concurrent rows never see the same totals.

The month's totals (what the included quotas have used, and each meter's billable units per
plan version and model kind) are kept in `usage_totals`, one small row per tenant, month,
plan version and model kind, added to in the transaction that writes each usage row
(`add_to_totals`): pricing a row reads those instead of summing the month's usage rows, so
its cost does not grow with the tenant's traffic.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from sqlalchemy import Insert, bindparam, func, select, text
from sqlalchemy.orm import Session

from serve_app.platform.db import insert_of
from serve_app.platform.models import UsageTotalRow
from serve_app.platform.plans import PlanGrant, grant_at

Operation = Literal["synthesis", "voice", "job"]
OPERATIONS = ("synthesis", "voice", "job")
#: The quotas a plan includes each month, in the units the rows count them in.
QUOTAS = ("characters", "audio_seconds", "voice_clones")
#: The two-key advisory lock namespace of a tenant's usage writers ("qt").
USAGE_LOCK_SPACE = 0x7174
CHARACTERS_PER_PRICE = 1000
MS_PER_PRICE = 60_000


@dataclass(frozen=True)
class QuotaUse:
    """One included quota, in its own units (audio: milliseconds), around one row."""

    before: int
    after: int
    included: int


@dataclass(frozen=True)
class Priced:
    plan_version_id: str | None = None
    billable_characters: int = 0
    billable_audio_ms: int = 0
    billable_operations: int = 0
    cost_characters: int = 0
    cost_audio: int = 0
    cost_operation: int = 0
    quotas: dict[str, QuotaUse] = field(default_factory=dict)

    @property
    def cost(self) -> int:
        return self.cost_characters + self.cost_audio + self.cost_operation

    def columns(self) -> dict[str, int | str | None]:
        return {"plan_version_id": self.plan_version_id,
                "billable_characters": self.billable_characters,
                "billable_audio_ms": self.billable_audio_ms,
                "billable_operations": self.billable_operations,
                "cost_characters": self.cost_characters, "cost_audio": self.cost_audio,
                "cost_operation": self.cost_operation, "cost": self.cost}


def running_price(billed_before: int, billed: int, price: int, unit: int) -> int:
    """The price of `billed` more units after `billed_before`, on the running total."""
    return (billed_before + billed) * price // unit - billed_before * price // unit


def past_included(included: int | None, before: int, amount: int) -> int:
    """How many of `amount` units (after `before` used) lie past the included quota."""
    if included is None:
        return 0
    return max(0, before + amount - included) - max(0, before - included)


def month_bounds(at: datetime) -> tuple[datetime, datetime]:
    start = at.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    end = start.replace(year=start.year + 1, month=1) if start.month == 12 else \
        start.replace(month=start.month + 1)
    return start, end


def lock_tenant_usage(session: Session, tenant_id: str) -> None:
    """Serialize the usage writers of one tenant until this transaction ends."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:space, hashtext(:tenant))"),
                        {"space": USAGE_LOCK_SPACE, "tenant": tenant_id})


_TOTALS_KEY = ("tenant_id", "month", "plan_version_id", "model")
#: What `add_to_totals` adds up (the columns of `usage_totals` past its key).
TOTALS = ("characters", "audio_ms", "voices", "billable_characters", "billable_audio_ms")

# The statements a usage row's pricing runs, built once and run with bound values (they run
# on every request).
_t = UsageTotalRow
_INCLUDED_USED = (select(func.coalesce(func.sum(_t.characters), 0),
                         func.coalesce(func.sum(_t.audio_ms), 0),
                         func.coalesce(func.sum(_t.voices), 0))
                  .where(_t.tenant_id == bindparam("tenant"), _t.month == bindparam("month")))
_BILLED_BEFORE = (select(_t.billable_characters, _t.billable_audio_ms)
                  .where(_t.tenant_id == bindparam("tenant"), _t.month == bindparam("month"),
                         _t.plan_version_id == bindparam("version"),
                         _t.model == bindparam("model")))


@functools.cache
def _add_totals(dialect: str) -> Insert:
    """The upsert that adds one row's amounts to its key's totals (values bound when run)."""
    table = UsageTotalRow.__table__
    statement = insert_of(dialect)(table)
    return statement.on_conflict_do_update(
        index_elements=list(_TOTALS_KEY),
        set_={c: table.c[c] + statement.excluded[c] for c in TOTALS})


def included_used(session: Session, tenant_id: str, month: datetime) -> dict[str, int]:
    """What the tenant used of each included quota in the month that starts at `month`
    (`month_bounds(...)[0]`): characters, audio in milliseconds, voices saved."""
    chars, audio_ms, voices = session.connection().execute(
        _INCLUDED_USED, {"tenant": tenant_id, "month": month}).one()
    return {"characters": int(chars), "audio_seconds": int(audio_ms),
            "voice_clones": int(voices)}


def _billed_before(session: Session, tenant_id: str, month: datetime, version_id: str,
                   model: str) -> tuple[int, int]:
    """Billable characters and audio milliseconds of the month so far, under one plan version
    and model kind."""
    row = session.connection().execute(
        _BILLED_BEFORE, {"tenant": tenant_id, "month": month, "version": version_id,
                         "model": model}).one_or_none()
    return (0, 0) if row is None else (int(row[0]), int(row[1]))


def add_to_totals(session: Session, *, tenant_id: str, model: str, operation: Operation,
                  characters: int, audio_ms: int, at: datetime, priced: Priced) -> None:
    """Add a written usage row to its month's running totals (in the row's transaction)."""
    session.connection().execute(_add_totals(session.get_bind().dialect.name), {
        "tenant_id": tenant_id, "month": month_bounds(at)[0],
        "plan_version_id": priced.plan_version_id or "", "model": model,
        "characters": characters, "audio_ms": audio_ms,
        "voices": 1 if operation == "voice" else 0,
        "billable_characters": priced.billable_characters,
        "billable_audio_ms": priced.billable_audio_ms})


def included_amounts(grant: PlanGrant) -> dict[str, int | None]:
    """Each included quota in the rows' units (audio: milliseconds); None: unlimited."""
    inc = grant.terms.included
    return {"characters": inc.characters,
            "audio_seconds": None if inc.audio_seconds is None else inc.audio_seconds * 1000,
            "voice_clones": inc.voice_clones}


def price_row(session: Session, *, tenant_id: str, model: str, operation: Operation,
              characters: int, audio_ms: int, at: datetime) -> Priced:
    """Price one row about to be written (call inside its transaction, after
    `lock_tenant_usage`)."""
    grant = grant_at(session, tenant_id, at)
    if grant is None:
        return Priced()
    start = month_bounds(at)[0]
    used = included_used(session, tenant_id, start)
    included = included_amounts(grant)
    amounts = {"characters": characters, "audio_seconds": audio_ms,
               "voice_clones": 1 if operation == "voice" else 0}
    quotas = {q: QuotaUse(used[q], used[q] + amounts[q], included[q] or 0)  # type: ignore[arg-type]
              for q in QUOTAS if included[q]}
    prices = grant.terms.prices
    billable_chars = past_included(included["characters"], used["characters"], characters)
    billable_audio = past_included(included["audio_seconds"], used["audio_seconds"], audio_ms)
    char_price = prices.per_1k_characters.get(model, 0)
    prices_chars = bool(billable_chars and char_price)
    prices_audio = bool(billable_audio and prices.per_audio_minute)
    # the running totals are read only when a meter has something to price
    chars_before, audio_before = _billed_before(session, tenant_id, start, grant.version_id,
                                                model) if prices_chars or prices_audio else (0, 0)
    cost_chars = running_price(chars_before, billable_chars, char_price,
                               CHARACTERS_PER_PRICE) if prices_chars else 0
    cost_audio = running_price(audio_before, billable_audio, prices.per_audio_minute,
                               MS_PER_PRICE) if prices_audio else 0

    billable_ops, cost_op = 0, 0
    if operation == "voice":
        billable_ops = past_included(included["voice_clones"], used["voice_clones"], 1)
        cost_op = billable_ops * prices.per_saved_voice
    elif operation == "job":
        billable_ops, cost_op = 1, prices.per_job
    return Priced(grant.version_id, billable_chars, billable_audio, billable_ops, cost_chars,
                  cost_audio, cost_op, quotas)
