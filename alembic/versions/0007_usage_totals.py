"""Running usage totals per tenant and month (serve_app.platform.pricing).

- `usage_totals`: per tenant, month (its first instant, UTC), plan version ("" for none) and
  model kind, what the month's usage rows add up to: characters, audio milliseconds, voices
  saved, billable characters and billable audio milliseconds. Pricing a row reads these
  instead of summing the month's rows; the transaction that writes a row adds it here.
- Filled from the usage rows already written.
- PostgreSQL: under row-level security as 0004's tables (the grants to qtts_app when the
  role exists).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections import defaultdict

import sqlalchemy as sa

from alembic import op
from serve_app.platform.isolation import TENANT_TABLES_0007, secure_new_tenant_tables
from serve_app.platform.models import UTCDateTime

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

#: The amounts a totals row adds up (as pricing.TOTALS was when this migration was written).
TOTALS = ("characters", "audio_ms", "voices", "billable_characters", "billable_audio_ms")


def upgrade() -> None:
    totals = op.create_table(
        "usage_totals",
        sa.Column("tenant_id", sa.String(40), primary_key=True),
        sa.Column("month", UTCDateTime(), primary_key=True),
        sa.Column("plan_version_id", sa.String(40), primary_key=True),
        sa.Column("model", sa.String(32), primary_key=True),
        *(sa.Column(name, sa.BigInteger(), nullable=False) for name in TOTALS),
    )
    _fill(totals)
    secure_new_tenant_tables(op, TENANT_TABLES_0007)


def _fill(totals: sa.Table) -> None:
    """The totals of the usage rows already written (as the admin role: every tenant's)."""
    rows = sa.table("usage_records", sa.column("tenant_id"), sa.column("created_at", UTCDateTime()),
                    sa.column("plan_version_id"), sa.column("model"), sa.column("operation"),
                    sa.column("characters"), sa.column("audio_ms"),
                    sa.column("billable_characters"), sa.column("billable_audio_ms"))
    sums: dict[tuple, list[int]] = defaultdict(lambda: [0] * len(TOTALS))
    result = op.get_bind().execute(sa.select(rows)).mappings()
    for row in result:
        month = row["created_at"].replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        key = (row["tenant_id"], month,
               row["plan_version_id"] or "", row["model"])
        for i, amount in enumerate((row["characters"], row["audio_ms"],
                                    1 if row["operation"] == "voice" else 0,
                                    row["billable_characters"], row["billable_audio_ms"])):
            sums[key][i] += int(amount or 0)
    if sums:
        op.bulk_insert(totals, [
            {"tenant_id": tenant, "month": month, "plan_version_id": version, "model": model,
             **dict(zip(TOTALS, amounts, strict=True))}
            for (tenant, month, version, model), amounts in sums.items()])


def downgrade() -> None:
    op.drop_table("usage_totals")
