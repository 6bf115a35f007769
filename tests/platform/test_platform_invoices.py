"""Invoices and the usage export, as a spec: an invoice's total is its month's rows' costs
plus the base fee to the minor unit; closing twice gives the same invoice; the JSONL
export's quantities are the invoice's; a tenant reads only its own. SQLite and PostgreSQL.
"""

from __future__ import annotations

import csv
import io
import json
from collections import Counter
from datetime import UTC, datetime

import pytest
from platform_testing import MARCH, at, record, terms
from sqlalchemy import func, select

from serve_app.platform.errors import Conflict, InvalidRequest, NotFound
from serve_app.platform.invoices import BILLED_KINDS, to_csv, to_jsonl
from serve_app.platform.models import UsageRecordRow


def rows_cost(platform, tenant_id: str) -> int:
    with platform.db.admin_transaction() as session:
        return int(session.scalar(select(func.sum(UsageRecordRow.cost)).where(
            UsageRecordRow.tenant_id == tenant_id,
            UsageRecordRow.created_at >= MARCH,
            UsageRecordRow.created_at < datetime(2025, 4, 1, tzinfo=UTC))))


@pytest.fixture
def march(platform):
    """Two tenants' March 2025: acme on `pro` with a price change mid-month and usage of
    every kind; beta with usage and no plan; rows in February and April that March leaves out."""
    acme, beta = platform.tenants.create("acme"), platform.tenants.create("beta")
    platform.plans.create("pro", terms(), effective_from=MARCH)
    platform.plans.assign("acme", "pro", effective_from=MARCH)
    record(platform, acme.id, "feb", datetime(2025, 2, 28, 23, tzinfo=UTC), characters=9999)
    record(platform, acme.id, "r1", at(2), characters=150, audio_seconds=30)
    record(platform, acme.id, "r2", at(3), model="VoiceDesign", characters=1000, audio_seconds=45)
    record(platform, acme.id, "v1", at(4), model="VoiceClone", operation="voice")
    record(platform, acme.id, "v2", at(5), model="VoiceClone", operation="voice")
    record(platform, acme.id, "j1", at(6), operation="job")
    platform.plans.new_version("pro", terms(prices={
        "base_monthly": 2900, "per_1k_characters": {"CustomVoice": 333},
        "per_audio_minute": 70, "per_job": 40}), effective_from=at(10))
    record(platform, acme.id, "r3", at(12), characters=1234, audio_seconds=61.7)
    record(platform, acme.id, "j2", at(13), operation="job")
    record(platform, acme.id, "apr", datetime(2025, 4, 1, tzinfo=UTC), characters=5000)
    record(platform, beta.id, "b1", at(2), characters=70, audio_seconds=3)
    return acme, beta


def test_an_invoice_total_is_the_rows_costs_plus_the_base_fee_to_the_minor_unit(platform, march):
    acme, beta = march
    invoices = {i.tenant_name: i for i in platform.invoices.close_period("2025-03")}
    assert set(invoices) == {"acme", "beta"}
    invoice = invoices["acme"]
    # the base fee of the version in force at the month's end (v2), plus every March row
    assert invoice.total == 2900 + rows_cost(platform, acme.id)
    assert invoice.total == sum(line["amount"] for line in invoice.lines)
    kinds = Counter(line["kind"] for line in invoice.lines)
    assert set(kinds) == {"base_fee", "included", "overage", "saved_voices", "jobs"}
    overage = {(line["plan"], line["model"], line["meter"]): line
               for line in invoice.lines if line["kind"] == "overage"}
    # v2: 1,234 CustomVoice characters past the quota at 333 per 1,000 = 410.9 -> 410
    assert overage[("pro v2", "CustomVoice", "characters")]["quantity"] == 1234
    assert overage[("pro v2", "CustomVoice", "characters")]["amount"] == 410
    assert overage[("pro v1", "VoiceDesign", "characters")]["amount"] == 300
    included = [line for line in invoice.lines if line["kind"] == "included"]
    assert all(line["amount"] == 0 for line in included)
    assert sum(line["quantity"] for line in included if line["meter"] == "characters") == 100
    assert invoice.currency == "USD" and invoice.period == "2025-03"
    assert invoices["beta"].total == 0 and invoices["beta"].lines[0]["plan"] == "no plan"


def test_closing_a_period_twice_gives_the_same_invoices(platform, march):
    first = platform.invoices.close_period("2025-03")
    second = platform.invoices.close_period("2025-03")
    assert [(i.id, i.total, i.lines) for i in first] == [(i.id, i.total, i.lines) for i in second]
    assert len(platform.invoices.list(march[0].id)) == 1


def test_a_month_is_closed_only_once_it_has_ended_and_named_as_yyyy_mm(platform):
    with pytest.raises(Conflict, match="close it after"):
        platform.invoices.close_period(datetime.now(UTC).strftime("%Y-%m"))
    with pytest.raises(InvalidRequest, match="YYYY-MM"):
        platform.invoices.close_period("2025-03-01")


def test_the_export_quantities_equal_the_invoices(platform, march):
    with pytest.raises(Conflict, match="close the period first"):
        platform.invoices.export("2025-03")
    invoices = platform.invoices.close_period("2025-03")
    records = platform.invoices.export("2025-03")
    for invoice in invoices:
        billed = [line for line in invoice.lines if line["kind"] in BILLED_KINDS
                  and line["quantity"]]
        mine = [r for r in records if r["metadata"]["invoice_id"] == invoice.id]
        assert [r["quantity"] for r in mine] == [line["quantity"] for line in billed]
        assert sum(r["metadata"]["amount"] for r in mine) == invoice.total
        assert {r["customer"] for r in mine} <= {invoice.tenant_name}
    meters = {r["meter"] for r in records}
    assert {"base_fee", "characters.CustomVoice", "audio.VoiceDesign", "saved_voices.VoiceClone",
            "jobs.CustomVoice"} <= meters
    assert all(isinstance(r["quantity"], int) and r["quantity"] > 0 for r in records)
    assert {r["timestamp"] for r in records} == {int(datetime(2025, 4, 1, tzinfo=UTC).timestamp()) - 1}
    keys = [r["idempotency_key"] for r in records]
    assert len(set(keys)) == len(keys)
    assert keys == [r["idempotency_key"] for r in platform.invoices.export("2025-03")]  # stable
    lines = to_jsonl(records).splitlines()
    assert [json.loads(line) for line in lines] == records


def test_a_tenant_reads_only_its_own_invoices_and_the_csv_adds_up(platform, march):
    acme, beta = march
    invoices = {i.tenant_name: i for i in platform.invoices.close_period("2025-03")}
    mine = platform.invoices.get(acme.id, invoices["acme"].id)
    assert mine == invoices["acme"]
    with pytest.raises(NotFound):
        platform.invoices.get(beta.id, invoices["acme"].id)
    assert [i.id for i in platform.invoices.list(beta.id)] == [invoices["beta"].id]
    table = list(csv.DictReader(io.StringIO(to_csv(mine))))
    assert table[-1]["kind"] == "total" and int(table[-1]["amount"]) == mine.total
    assert sum(int(r["amount"]) for r in table[:-1]) == mine.total
