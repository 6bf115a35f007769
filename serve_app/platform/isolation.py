"""Tenant isolation that PostgreSQL itself enforces: row-level security on every
tenant-scoped table.

Every table in `TENANT_TABLES` has RLS enabled and one policy, `tenant_isolation`, for
reads and writes alike: a row is visible, and may be written, only when its `tenant_id`
equals the transaction-local setting `app.tenant_id`, which `Database.transaction(tenant_id)`
sets with `set_config(..., true)` when the platform acts for a tenant. A transaction with no
setting sees no tenant-scoped row at all: a forgotten filter fails closed.

The roles (migration 0004 creates `APP_ROLE` and grants it what the request path needs):

- the application (DATABASE_URL) logs in as a member of `qtts_app`: it owns no table and
  has no BYPASSRLS, so the policies bind it, and it cannot turn them off (ALTER TABLE ...
  DISABLE ROW LEVEL SECURITY and DROP POLICY need the owner; with `row_security = off` its
  queries fail instead of returning other tenants' rows);
- the admin path (ADMIN_DATABASE_URL) is the tables' owner, which RLS does not bind: the
  admin API and CLI, migrations, and the work that crosses tenants by design: looking a key
  up by its hash before the tenant is known, claiming the next job from any tenant's queue,
  claiming webhook and quota-warning deliveries, closing a period.

SQLite (the one-box demo) has no row-level security: there, isolation is the application's
own `tenant_id` filter on every query (which the PostgreSQL path keeps too).
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.engine import Engine

from serve_app.platform.db import TENANT_SETTING

APP_ROLE = "qtts_app"
POLICY = "tenant_isolation"
#: Every table whose rows belong to one tenant (each has a `tenant_id` column).
#: Those that migration 0004 put under row-level security ...
TENANT_TABLES_0004 = ("api_keys", "tenant_limits", "usage_records", "voices", "jobs",
                      "invoices", "tenant_plans", "tenant_webhooks", "quota_alerts")
#: ... and those 0005 added (consent, the audit log), under the same policy.
TENANT_TABLES_0005 = ("tenant_consent", "consent_statements", "audit_events")
#: ... and 0006's pronunciation dictionaries.
TENANT_TABLES_0006 = ("pronunciation_dictionaries",)
#: ... and 0007's running usage totals.
TENANT_TABLES_0007 = ("usage_totals",)
TENANT_TABLES = TENANT_TABLES_0004 + TENANT_TABLES_0005 + TENANT_TABLES_0006 + \
    TENANT_TABLES_0007
#: Shared tables the application reads and never writes.
READ_ONLY_TABLES = ("tenants", "plans", "plan_versions")


def policy_expression() -> str:
    return f"tenant_id = current_setting('{TENANT_SETTING}', true)"


def secure_new_tenant_tables(op, tables: tuple[str, ...]) -> None:
    """What a migration that adds tenant tables runs for them (`op`: Alembic's; PostgreSQL
    only): the application role's grants, when the role exists, and row-level security with
    the one policy."""
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    role_exists = bind.exec_driver_sql(
        f"SELECT 1 FROM pg_roles WHERE rolname = '{APP_ROLE}'").scalar() is not None
    for table in tables:
        if role_exists:
            op.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON {table} TO {APP_ROLE}")
        op.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
        op.execute(f"CREATE POLICY {POLICY} ON {table} USING ({policy_expression()}) "
                   f"WITH CHECK ({policy_expression()})")


@dataclass(frozen=True)
class Isolation:
    """Which guarantee a connection gets."""

    backend: str
    row_level_security: bool  # the policies bind this connection's role
    role: str | None
    detail: str

    def as_dict(self) -> dict:
        return {"backend": self.backend, "row_level_security": self.row_level_security,
                "role": self.role, "detail": self.detail}


def inspect_isolation(engine: Engine) -> Isolation:
    """Whether the policies bind `engine`'s role (PostgreSQL), or what stands in for them."""
    if engine.dialect.name != "postgresql":
        return Isolation(engine.dialect.name, False, None,
                         "application filtering: every query names its tenant")
    with engine.connect() as connection:
        role, bypass = connection.execute(text(
            "SELECT current_user, rolbypassrls OR rolsuper FROM pg_roles "
            "WHERE rolname = current_user")).one()
        tables = connection.execute(text(
            "SELECT c.relname, c.relrowsecurity, pg_has_role(c.relowner, 'USAGE') "
            "FROM pg_class c WHERE c.relkind = 'r' AND c.relname = ANY(:tables) "
            "AND c.relnamespace = to_regnamespace(current_schema())::oid"),
            {"tables": list(TENANT_TABLES)}).all()
    missing = sorted(set(TENANT_TABLES) - {t[0] for t in tables if t[1]})
    owner = any(t[2] for t in tables)
    bound = not bypass and not owner and not missing
    if missing:
        detail = f"row-level security is off on {', '.join(missing)} (migrate to 0004)"
    elif bypass or owner:
        detail = (f"role {role} owns the tables or bypasses row-level security: isolation "
                  "rests on application filtering (connect the application as a member of "
                  f"{APP_ROLE}, the admin path with ADMIN_DATABASE_URL)")
    else:
        detail = f"row-level security binds role {role} on every tenant-scoped table"
    return Isolation("postgresql", bound, role, detail)
