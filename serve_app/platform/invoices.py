"""Invoices: closing a month makes one invoice per tenant, a sum of its priced usage rows.

    invoices = Invoices(db, currency="USD")
    invoices.close_period("2026-11")        # idempotent: closing twice gives the same invoices
    invoices.list(tenant_id); invoices.get(tenant_id, invoice_id); to_csv(invoice)
    invoices.export("2026-11")              # JSONL usage records for a payment provider

An invoice's lines: the plan's base fee (the version in force at the month's end), usage
within the included quota at zero, overage per plan version, model kind and meter
(characters, audio milliseconds), saved voices and jobs. Its total is the base fee plus the
sum of the month's rows' `cost`, to the minor unit: the rows were priced when written
(serve_app.platform.pricing) and are never re-priced here. An invoice, once made, is final:
(tenant, month) is unique, so a second close (or a concurrent one) returns the first.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from serve_app.platform.db import Database, dialect_insert
from serve_app.platform.errors import Conflict, InvalidRequest, NotFound
from serve_app.platform.models import (
    InvoiceRow,
    PlanRow,
    PlanVersionRow,
    Tenant,
    TenantPlanRow,
    UsageRecordRow,
    new_id,
    utcnow,
)
from serve_app.platform.plans import PlanTerms, grant_at
from serve_app.platform.usage import period_bounds

#: The line kinds a payment provider bills (the export); `included` lines are at zero.
BILLED_KINDS = ("base_fee", "overage", "saved_voices", "jobs")
CSV_COLUMNS = ("invoice_id", "tenant", "period", "currency", "kind", "description", "plan",
               "model", "meter", "quantity", "unit", "unit_price", "price_per", "amount")


@dataclass(frozen=True)
class Invoice:
    id: str
    tenant_id: str
    tenant_name: str
    period: str
    currency: str
    total: int
    lines: tuple[dict, ...]
    created_at: datetime

    def as_dict(self) -> dict:
        return {"id": self.id, "object": "invoice", "tenant_id": self.tenant_id,
                "tenant": self.tenant_name, "period": self.period, "currency": self.currency,
                "total": self.total, "lines": list(self.lines),
                "created_at": self.created_at.isoformat()}


def month_of(period: str) -> tuple[datetime, datetime]:
    """[start, end) of a YYYY-MM month, or InvalidRequest naming the form."""
    if len(period) != 7:
        raise InvalidRequest(f"period must be a month, YYYY-MM, got {period!r}", param="period")
    return period_bounds(period)


def _line(kind: str, description: str, quantity: int, unit: str, amount: int, *,
          plan: str | None = None, model: str | None = None, meter: str | None = None,
          unit_price: int | None = None, price_per: int | None = None) -> dict:
    return {"kind": kind, "description": description, "plan": plan, "model": model,
            "meter": meter, "quantity": quantity, "unit": unit, "unit_price": unit_price,
            "price_per": price_per, "amount": amount}


def _plan_labels(session: Session, version_ids: set[str]) -> dict[str, tuple[str, PlanTerms]]:
    rows = session.execute(
        select(PlanVersionRow.id, PlanRow.name, PlanVersionRow.version, PlanVersionRow.terms)
        .join(PlanRow, PlanRow.id == PlanVersionRow.plan_id)
        .where(PlanVersionRow.id.in_(version_ids))).all() if version_ids else []
    return {vid: (f"{name} v{version}", PlanTerms.model_validate(terms))
            for vid, name, version, terms in rows}


def invoice_lines(session: Session, tenant_id: str, start: datetime, end: datetime
                  ) -> tuple[list[dict], int]:
    """The month's lines and total (base fee + the rows' costs)."""
    t = UsageRecordRow
    groups = session.execute(
        select(t.plan_version_id, t.model, t.operation, func.count(),
               func.coalesce(func.sum(t.characters), 0),
               func.coalesce(func.sum(t.billable_characters), 0),
               func.coalesce(func.sum(t.audio_ms), 0),
               func.coalesce(func.sum(t.billable_audio_ms), 0),
               func.coalesce(func.sum(t.billable_operations), 0),
               func.coalesce(func.sum(t.cost_characters), 0),
               func.coalesce(func.sum(t.cost_audio), 0),
               func.coalesce(func.sum(t.cost_operation), 0))
        .where(t.tenant_id == tenant_id, t.created_at >= start, t.created_at < end)
        .group_by(t.plan_version_id, t.model, t.operation)
        .order_by(t.plan_version_id, t.model, t.operation)).all()
    rows_cost = int(session.scalar(
        select(func.coalesce(func.sum(t.cost), 0))
        .where(t.tenant_id == tenant_id, t.created_at >= start, t.created_at < end)))
    labels = _plan_labels(session, {g[0] for g in groups if g[0]})
    lines: list[dict] = []
    grant = grant_at(session, tenant_id, end - timedelta(microseconds=1))
    base = grant.terms.prices.base_monthly if grant else 0
    if grant is not None:
        lines.append(_line("base_fee", f"{grant.plan_name} v{grant.version}: base fee", 1,
                           "month", base, plan=f"{grant.plan_name} v{grant.version}",
                           unit_price=base, price_per=1))
    for (version_id, model, operation, count, chars, billed_chars, audio_ms, billed_audio,
         billed_ops, cost_chars, cost_audio, cost_op) in groups:
        plan, terms = labels.get(version_id, ("no plan", None)) if version_id else ("no plan", None)
        prices = terms.prices if terms else None
        kw = {"plan": plan, "model": model}
        if operation == "synthesis":
            for meter, unit, used, billed, cost, price, per in (
                    ("characters", "characters", chars, billed_chars, cost_chars,
                     prices.per_1k_characters.get(model, 0) if prices else 0, 1000),
                    ("audio", "milliseconds of audio", audio_ms, billed_audio, cost_audio,
                     prices.per_audio_minute if prices else 0, 60_000)):
                if used - billed:
                    lines.append(_line("included", f"{model} {meter}, included", int(used - billed),
                                       unit, 0, meter=meter, **kw))
                if billed:
                    lines.append(_line("overage", f"{model} {meter} past the included quota",
                                       int(billed), unit, int(cost), meter=meter,
                                       unit_price=price, price_per=per, **kw))
        elif operation == "voice":
            if count - billed_ops:
                lines.append(_line("included", "saved voices, included", int(count - billed_ops),
                                   "voices", 0, meter="voice_clones", **kw))
            if billed_ops:
                lines.append(_line("saved_voices", "saved voices past the included clones",
                                   int(billed_ops), "voices", int(cost_op), meter="voice_clones",
                                   unit_price=prices.per_saved_voice if prices else 0,
                                   price_per=1, **kw))
        elif operation == "job":
            lines.append(_line("jobs", "async jobs", int(count), "jobs", int(cost_op),
                               meter="jobs", unit_price=prices.per_job if prices else 0,
                               price_per=1, **kw))
    total = base + rows_cost
    if sum(line["amount"] for line in lines) != total:  # the rows' split costs add up to cost
        raise AssertionError(f"invoice lines of {tenant_id} do not add up to its total")
    return lines, total


def _invoice(row: InvoiceRow, tenant_name: str) -> Invoice:
    return Invoice(row.id, row.tenant_id, tenant_name, row.period, row.currency, row.total,
                   tuple(row.lines), row.created_at)


class Invoices:
    def __init__(self, db: Database, currency: str = "USD"):
        self._db = db
        self.currency = currency

    def close_period(self, period: str, now: datetime | None = None) -> list[Invoice]:
        """One invoice per tenant with a plan or usage in the month (admin: every tenant);
        a tenant's existing invoice for it is returned as it is."""
        start, end = month_of(period)
        if end > (now or utcnow()):
            raise Conflict(f"the period {period} ends at {end.isoformat()}: close it after",
                           param="period")
        out: list[Invoice] = []
        with self._db.admin_transaction() as session:
            insert = dialect_insert(session)
            with_usage = select(UsageRecordRow.tenant_id).where(
                UsageRecordRow.created_at >= start, UsageRecordRow.created_at < end)
            with_plan = select(TenantPlanRow.tenant_id).where(TenantPlanRow.effective_from < end)
            tenants = session.execute(
                select(Tenant.id, Tenant.name).where(or_(Tenant.id.in_(with_usage),
                                                         Tenant.id.in_(with_plan)))
                .order_by(Tenant.name)).all()
            for tenant_id, tenant_name in tenants:
                if session.scalar(select(InvoiceRow.id).where(InvoiceRow.tenant_id == tenant_id,
                                                             InvoiceRow.period == period)) is None:
                    lines, total = invoice_lines(session, tenant_id, start, end)
                    session.execute(insert(InvoiceRow.__table__).values(
                        id=new_id("inv"), tenant_id=tenant_id, period=period,
                        currency=self.currency, total=total, lines=lines, created_at=utcnow(),
                    ).on_conflict_do_nothing(index_elements=["tenant_id", "period"]))
                row = session.scalar(select(InvoiceRow).where(InvoiceRow.tenant_id == tenant_id,
                                                              InvoiceRow.period == period))
                out.append(_invoice(row, tenant_name))
        return out

    def list(self, tenant_id: str) -> list[Invoice]:
        with self._db.transaction(tenant_id) as session:
            name = session.scalar(select(Tenant.name).where(Tenant.id == tenant_id)) or ""
            rows = session.scalars(select(InvoiceRow).where(InvoiceRow.tenant_id == tenant_id)
                                   .order_by(InvoiceRow.period.desc())).all()
            return [_invoice(r, name) for r in rows]

    def get(self, tenant_id: str, invoice_id: str) -> Invoice:
        """A tenant's invoice (another tenant's is "not found", as a missing one)."""
        with self._db.transaction(tenant_id) as session:
            row = session.scalar(select(InvoiceRow).where(InvoiceRow.id == invoice_id,
                                                          InvoiceRow.tenant_id == tenant_id))
            if row is None:
                raise NotFound(f"no invoice {invoice_id!r}", param="invoice_id")
            name = session.scalar(select(Tenant.name).where(Tenant.id == tenant_id)) or ""
            return _invoice(row, name)

    def of_period(self, period: str) -> list[Invoice]:
        start, _ = month_of(period)
        with self._db.admin_transaction() as session:
            rows = session.execute(select(InvoiceRow, Tenant.name)
                                   .join(Tenant, Tenant.id == InvoiceRow.tenant_id)
                                   .where(InvoiceRow.period == period)
                                   .order_by(Tenant.name)).all()
            return [_invoice(r, name) for r, name in rows]

    def export(self, period: str) -> list[dict]:
        """Every tenant's billed quantities of a closed month, one usage record per invoice
        line, in the shape a payment provider's usage-record API takes: the customer
        reference (the tenant's name), the meter, an integer quantity, the timestamp (the
        month's last second) and an idempotency key stable across exports."""
        _, end = month_of(period)
        invoices = self.of_period(period)
        if not invoices:
            raise Conflict(f"no invoices for {period}: close the period first "
                           f"(qtts admin close-period {period})", param="period")
        records = []
        for invoice in invoices:
            for index, line in enumerate(invoice.lines):
                if line["kind"] not in BILLED_KINDS or not line["quantity"]:
                    continue
                meter = ".".join(p for p in (line["kind"] if line["kind"] != "overage" else
                                             line["meter"], line["model"]) if p)
                key = hashlib.sha256(f"{invoice.id}:{index}".encode()).hexdigest()[:32]
                records.append({
                    "customer": invoice.tenant_name, "meter": meter,
                    "quantity": line["quantity"], "timestamp": int(end.timestamp()) - 1,
                    "idempotency_key": key,
                    "metadata": {"tenant_id": invoice.tenant_id, "invoice_id": invoice.id,
                                 "period": period, "plan": line["plan"],
                                 "amount": line["amount"], "currency": invoice.currency}})
        return records


def to_jsonl(records: list[dict]) -> str:
    return "".join(json.dumps(r, separators=(",", ":"), sort_keys=True) + "\n" for r in records)


def to_csv(invoice: Invoice) -> str:
    """The invoice as CSV: one row per line, then the total."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(CSV_COLUMNS)
    head = [invoice.id, invoice.tenant_name, invoice.period, invoice.currency]
    for line in invoice.lines:
        writer.writerow(head + [line[c] if line[c] is not None else "" for c in CSV_COLUMNS[4:]])
    writer.writerow(head + ["total", "total", "", "", "", "", "", "", "", invoice.total])
    return out.getvalue()
