"""Plans, prices and invoices: versioned plans, tenants' moves between them, the cost of each
usage row (computed when it is written), invoices per tenant and month, the tenant webhook
and the quota warnings it carries.

- `plans`, `plan_versions` (terms as JSON, immutable; a change is a new version),
  `tenant_plans` (a tenant's plan from `effective_from` on).
- `usage_records`: `operation` (synthesis | voice | job), `audio_ms` (the exact integer the
  audio meters add up), the plan version that priced the row, its billable (past the
  included quota) units and its cost in integer minor units, split by meter.
- `invoices`: one per tenant and YYYY-MM, unique, so closing a period twice gives one.
- `tenant_webhooks`, `quota_alerts` (unique per tenant, period, quota and threshold).

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa

from alembic import op
from serve_app.platform.models import UTCDateTime

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
USAGE_COLUMNS = ("operation", "audio_ms", "plan_version_id", "billable_characters",
                 "billable_audio_ms", "billable_operations", "cost_characters", "cost_audio",
                 "cost_operation", "cost")


def _tenant_fk(**kwargs) -> sa.Column:
    return sa.Column("tenant_id", sa.String(40), sa.ForeignKey("tenants.id", ondelete="CASCADE"),
                     nullable=False, **kwargs)


def upgrade() -> None:
    op.create_table(
        "plans",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("name", sa.String(100), nullable=False, unique=True),
        sa.Column("archived_at", UTCDateTime()),
        sa.Column("created_at", UTCDateTime(), nullable=False),
    )
    op.create_table(
        "plan_versions",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("plan_id", sa.String(40), sa.ForeignKey("plans.id", ondelete="CASCADE"),
                  nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("terms", sa.JSON(), nullable=False),
        sa.Column("effective_from", UTCDateTime(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.UniqueConstraint("plan_id", "version", name="uq_plan_versions_plan_version"),
    )
    op.create_table(
        "tenant_plans",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        _tenant_fk(),
        sa.Column("plan_id", sa.String(40), sa.ForeignKey("plans.id"), nullable=False),
        sa.Column("effective_from", UTCDateTime(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
    )
    op.create_index("ix_tenant_plans_tenant_effective", "tenant_plans",
                    ["tenant_id", "effective_from"])
    with op.batch_alter_table("usage_records") as batch:
        batch.add_column(sa.Column("operation", sa.String(16), nullable=False,
                                   server_default="synthesis"))
        batch.add_column(sa.Column("audio_ms", sa.BigInteger(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("plan_version_id", sa.String(40)))
        for name in ("billable_characters", "billable_audio_ms"):
            batch.add_column(sa.Column(name, sa.BigInteger(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("billable_operations", sa.Integer(), nullable=False,
                                   server_default="0"))
        for name in ("cost_characters", "cost_audio", "cost_operation", "cost"):
            batch.add_column(sa.Column(name, sa.BigInteger(), nullable=False, server_default="0"))
    # rows written before this revision: their audio in whole milliseconds, cost 0 (no plan)
    op.execute("UPDATE usage_records SET audio_ms = CAST(ROUND(audio_seconds * 1000) AS BIGINT)")
    op.create_table(
        "invoices",
        sa.Column("id", sa.String(40), primary_key=True),
        _tenant_fk(),
        sa.Column("period", sa.String(7), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("total", sa.BigInteger(), nullable=False),
        sa.Column("lines", sa.JSON(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.UniqueConstraint("tenant_id", "period", name="uq_invoices_tenant_period"),
    )
    op.create_table(
        "tenant_webhooks",
        sa.Column("tenant_id", sa.String(40), sa.ForeignKey("tenants.id", ondelete="CASCADE"),
                  primary_key=True),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("secret", sa.Text(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
    )
    op.create_table(
        "quota_alerts",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        _tenant_fk(),
        sa.Column("period", sa.String(7), nullable=False),
        sa.Column("quota", sa.String(32), nullable=False),
        sa.Column("threshold", sa.Integer(), nullable=False),
        sa.Column("used", sa.BigInteger(), nullable=False),
        sa.Column("included", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("lease_until", UTCDateTime()),
        sa.Column("last_error", sa.Text()),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.UniqueConstraint("tenant_id", "period", "quota", "threshold",
                            name="uq_quota_alerts_once"),
    )


def downgrade() -> None:
    for table in ("quota_alerts", "tenant_webhooks", "invoices", "tenant_plans",
                  "plan_versions", "plans"):
        op.drop_table(table)
    with op.batch_alter_table("usage_records") as batch:
        for name in USAGE_COLUMNS:
            batch.drop_column(name)
