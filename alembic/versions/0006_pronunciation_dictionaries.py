"""Pronunciation dictionaries per tenant (serve_app.platform.pronunciation).

- `pronunciation_dictionaries`: a tenant's dictionary, its entries as JSON, its version (one
  more on every change) and its place among the tenant's defaults (`default_rank`).
- PostgreSQL: under row-level security as 0004's tables (the grants to qtts_app when the
  role exists).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa

from alembic import op
from serve_app.platform.isolation import TENANT_TABLES_0006, secure_new_tenant_tables
from serve_app.platform.models import UTCDateTime

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "pronunciation_dictionaries",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("tenant_id", sa.String(40), sa.ForeignKey("tenants.id", ondelete="CASCADE"),
                  nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("description", sa.Text()),
        sa.Column("language", sa.String(35)),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("entries", sa.JSON(), nullable=False),
        sa.Column("default_rank", sa.Integer()),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
    )
    op.create_index("ix_pronunciation_dictionaries_tenant", "pronunciation_dictionaries",
                    ["tenant_id"])
    secure_new_tenant_tables(op, TENANT_TABLES_0006)


def downgrade() -> None:
    op.drop_index("ix_pronunciation_dictionaries_tenant", "pronunciation_dictionaries")
    op.drop_table("pronunciation_dictionaries")
