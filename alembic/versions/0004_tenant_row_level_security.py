"""Tenant isolation in PostgreSQL itself: row-level security on every tenant-scoped table
(serve_app.platform.isolation), and the application role it binds.

PostgreSQL only (SQLite has no row-level security; the demo keeps application filtering):

- the role `qtts_app` (NOLOGIN; the application logs in as a member of it), created when
  the migrating role may create roles, else left to the operator (a NOTICE says so);
- its grants in this schema: SELECT on the shared tables (tenants, plans, plan_versions),
  SELECT/INSERT/UPDATE/DELETE on the tenant-scoped ones, their sequences; nothing else
  (not alembic_version, no DDL);
- on each tenant-scoped table: ENABLE ROW LEVEL SECURITY and the policy `tenant_isolation`
  (USING and WITH CHECK `tenant_id = current_setting('app.tenant_id', true)`). The tables'
  owner, which runs the migrations and the admin path, is not bound (no FORCE).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-05
"""

from __future__ import annotations

from alembic import op
from serve_app.platform.isolation import (
    APP_ROLE,
    POLICY,
    READ_ONLY_TABLES,
    policy_expression,
)
from serve_app.platform.isolation import TENANT_TABLES_0004 as TENANT_TABLES

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def _postgresql() -> bool:
    return op.get_bind().dialect.name == "postgresql"


def upgrade() -> None:
    if not _postgresql():
        return
    op.execute(f"""
        DO $$ BEGIN
            CREATE ROLE {APP_ROLE} NOLOGIN;
        EXCEPTION
            WHEN duplicate_object THEN NULL;
            WHEN insufficient_privilege THEN
                RAISE NOTICE 'cannot create role {APP_ROLE}: create it (NOLOGIN) and grant '
                             'it as migration 0004 does';
        END $$""")
    role_exists = op.get_bind().exec_driver_sql(
        f"SELECT 1 FROM pg_roles WHERE rolname = '{APP_ROLE}'").scalar() is not None
    if role_exists:
        op.execute(f"DO $$ BEGIN EXECUTE format('GRANT USAGE ON SCHEMA %I TO {APP_ROLE}', "
                   "current_schema()); END $$")
        for table in READ_ONLY_TABLES:
            op.execute(f"GRANT SELECT ON {table} TO {APP_ROLE}")
        for table in TENANT_TABLES:
            op.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON {table} TO {APP_ROLE}")
        for table in ("usage_records", "tenant_plans", "quota_alerts"):  # BIGSERIAL ids
            op.execute(f"DO $$ BEGIN EXECUTE format('GRANT USAGE, SELECT ON SEQUENCE %s TO "
                       f"{APP_ROLE}', pg_get_serial_sequence('{table}', 'id')); END $$")
    for table in TENANT_TABLES:
        op.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
        op.execute(f"CREATE POLICY {POLICY} ON {table} USING ({policy_expression()}) "
                   f"WITH CHECK ({policy_expression()})")


def downgrade() -> None:
    if not _postgresql():
        return
    for table in TENANT_TABLES:
        op.execute(f"DROP POLICY IF EXISTS {POLICY} ON {table}")
        op.execute(f"ALTER TABLE {table} DISABLE ROW LEVEL SECURITY")
