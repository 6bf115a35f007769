"""Safe voice cloning: consent policies and statements, consent evidence and per-voice data
keys on saved voices, and the tenant audit log.

- `voices`: `data_key` (the voice's own AES key, sealed by the service key `key_id`; NULL
  for voices saved before this revision, sealed by the service key itself until the next key
  rotation moves them), `consent_level`, `consent_similarity`, `consent_blob`.
- `tenant_consent`: a tenant's own consent policy (voices, one_shot; NULL: inherited).
- `consent_statements`: statements issued with a one-time code, expiring, used once.
- `audit_events`: created / used / deleted voices per tenant: ids, times, key ids, no content.
- PostgreSQL: the new tables under row-level security as 0004's (the grants to qtts_app when
  the role exists).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa

from alembic import op
from serve_app.platform.isolation import APP_ROLE, POLICY, TENANT_TABLES_0005, policy_expression
from serve_app.platform.models import UTCDateTime

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
VOICE_COLUMNS = ("data_key", "consent_level", "consent_similarity", "consent_blob")


def _tenant_fk(**kwargs) -> sa.Column:
    return sa.Column("tenant_id", sa.String(40), sa.ForeignKey("tenants.id", ondelete="CASCADE"),
                     nullable=False, **kwargs)


def upgrade() -> None:
    with op.batch_alter_table("voices") as batch:
        batch.add_column(sa.Column("data_key", sa.Text()))
        batch.add_column(sa.Column("consent_level", sa.String(16)))
        batch.add_column(sa.Column("consent_similarity", sa.Float()))
        batch.add_column(sa.Column("consent_blob", sa.String(255)))
    op.create_table(
        "tenant_consent",
        _tenant_fk(primary_key=True),
        sa.Column("voices", sa.String(16)),
        sa.Column("one_shot", sa.String(16)),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
    )
    op.create_table(
        "consent_statements",
        sa.Column("id", sa.String(40), primary_key=True),
        _tenant_fk(),
        sa.Column("code", sa.String(16), nullable=False),
        sa.Column("language", sa.String(8), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("expires_at", UTCDateTime(), nullable=False),
        sa.Column("used_at", UTCDateTime()),
    )
    op.create_index("ix_consent_statements_tenant_code", "consent_statements",
                    ["tenant_id", "code"])
    op.create_table(
        "audit_events",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        _tenant_fk(),
        sa.Column("at", UTCDateTime(), nullable=False),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("voice_id", sa.String(40)),
        sa.Column("api_key_id", sa.String(40)),
        sa.Column("service_key_id", sa.String(64)),
        sa.Column("request_id", sa.String(100)),
        sa.Column("detail", sa.JSON()),
    )
    op.create_index("ix_audit_events_tenant_at", "audit_events", ["tenant_id", "at"])
    if op.get_bind().dialect.name != "postgresql":
        return
    role_exists = op.get_bind().exec_driver_sql(
        f"SELECT 1 FROM pg_roles WHERE rolname = '{APP_ROLE}'").scalar() is not None
    if role_exists:
        for table in TENANT_TABLES_0005:
            op.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON {table} TO {APP_ROLE}")
        op.execute(f"DO $$ BEGIN EXECUTE format('GRANT USAGE, SELECT ON SEQUENCE %s TO "
                   f"{APP_ROLE}', pg_get_serial_sequence('audit_events', 'id')); END $$")
    for table in TENANT_TABLES_0005:
        op.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
        op.execute(f"CREATE POLICY {POLICY} ON {table} USING ({policy_expression()}) "
                   f"WITH CHECK ({policy_expression()})")


def downgrade() -> None:
    op.drop_index("ix_audit_events_tenant_at", "audit_events")
    op.drop_table("audit_events")
    op.drop_index("ix_consent_statements_tenant_code", "consent_statements")
    op.drop_table("consent_statements")
    op.drop_table("tenant_consent")
    with op.batch_alter_table("voices") as batch:
        for column in VOICE_COLUMNS:
            batch.drop_column(column)
