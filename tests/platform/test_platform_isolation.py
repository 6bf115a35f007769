"""Tenant isolation that PostgreSQL enforces, as a spec: under tenant A's setting, a query
with no tenant filter at all returns only A's rows, from every tenant-scoped table; with no
setting, none; the application role cannot write another tenant's rows or turn row-level
security off. SQLite keeps application filtering, and says so.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from platform_testing import (
    MARCH,
    RECORDED,
    as_login,
    at,
    make_prompt,
    platform_args,
    record,
    terms,
)
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from serve_app.platform.consent import ConsentPolicy
from serve_app.platform.errors import ConfigurationError, NotFound
from serve_app.platform.isolation import TENANT_TABLES, inspect_isolation
from serve_app.platform.jobs import JobRequest
from serve_app.platform.models import Base
from serve_app.platform.pronunciation import EntryData
from serve_app.platform.service import Platform


@pytest.fixture
def rls_platform(postgres_schema_url: str, postgres_app_login: str, tmp_path: Path
                 ) -> Iterator[Platform]:
    """The platform as production runs it on PostgreSQL: the application role and the
    owner as the admin path."""
    p = Platform.open(platform_args(as_login(postgres_schema_url, postgres_app_login), tmp_path,
                                    admin_database_url=postgres_schema_url), migrate=True)
    yield p
    p.close()


def populate(platform: Platform, name: str) -> str:
    """A tenant with a row in every tenant-scoped table; its id."""
    tenant = platform.tenants.create(name)                                   # tenant_limits
    platform.plans.create(f"plan-{name}", terms(included={"characters": 10}),
                          effective_from=MARCH)
    platform.plans.assign(name, f"plan-{name}", effective_from=MARCH)        # tenant_plans
    principal = platform.keys.verify(platform.keys.create(name).secret)      # api_keys
    platform.set_tenant_webhook(name, "https://example.com/hook", "whsec_x")  # tenant_webhooks
    record(platform, tenant.id, f"{name}-march", at(3), characters=12)  # usage, quota_alerts
    platform.set_tenant_consent(name, ConsentPolicy(voices="recorded"))      # tenant_consent
    platform.statements.issue(tenant.id)                                     # consent_statements
    platform.dictionaries.create(tenant.id, "brands", [EntryData("Qwen", "chwen")])  # pronun...

    async def act():
        await platform.create_clone_voice(principal, "narrator", make_prompt(),     # voices
                                          consent=RECORDED)  # audit_events
        await platform.submit_job(principal, JobRequest(model="CustomVoice",       # jobs
                                                        text="Hello."))

    asyncio.run(act())
    return tenant.id


def tenant_ids(platform: Platform, table: str, tenant_id: str | None) -> list[str]:
    """`SELECT tenant_id FROM table`, no filter, as the application acting for `tenant_id`."""
    with platform.db.transaction(tenant_id) as session:
        return list(session.execute(text(f"SELECT tenant_id FROM {table}")).scalars())


def test_every_table_with_a_tenant_id_is_under_row_level_security():
    scoped = {t.name for t in Base.metadata.sorted_tables if "tenant_id" in t.columns}
    assert scoped == set(TENANT_TABLES)


def test_under_a_tenants_setting_an_unfiltered_query_returns_only_its_rows(rls_platform):
    a, b = populate(rls_platform, "a"), populate(rls_platform, "b")
    rls_platform.invoices.close_period("2025-03")                            # invoices
    for table in TENANT_TABLES:
        with rls_platform.db.admin_transaction() as session:  # the owner: every tenant's rows
            everyone = set(session.execute(text(f"SELECT tenant_id FROM {table}")).scalars())
        assert everyone == {a, b}, table
        assert set(tenant_ids(rls_platform, table, a)) == {a}, table
        assert set(tenant_ids(rls_platform, table, b)) == {b}, table
        assert tenant_ids(rls_platform, table, None) == [], table  # no setting: nothing
    assert rls_platform.isolation.row_level_security is True


def test_the_application_role_cannot_write_another_tenants_rows(rls_platform):
    a, b = populate(rls_platform, "a"), populate(rls_platform, "b")
    with pytest.raises(DBAPIError, match="row-level security"):
        with rls_platform.db.transaction(a) as session:
            session.execute(text("UPDATE voices SET tenant_id = :b"), {"b": b})
    with pytest.raises(DBAPIError, match="row-level security"):
        with rls_platform.db.transaction(a) as session:
            session.execute(text(
                "INSERT INTO usage_records (request_id, tenant_id, model, endpoint, characters,"
                " audio_seconds, processing_ms, streamed, status, created_at) VALUES "
                "('forged', :b, 'CustomVoice', 'speech', 1, 0, 0, false, 'ok', now())"), {"b": b})
    with rls_platform.db.transaction(a) as session:  # B's rows are out of reach, not an error
        assert session.execute(text("DELETE FROM jobs")).rowcount == 1
    assert len(tenant_ids(rls_platform, "jobs", b)) == 1


def test_another_tenants_dictionary_is_out_of_reach_of_the_database_itself(rls_platform):
    """Row-level security alone: a query for B's dictionary by its id, with no tenant filter
    at all, acting for A, finds nothing; the store answers 404 as for a missing one."""
    a, b = populate(rls_platform, "a"), populate(rls_platform, "b")
    theirs = rls_platform.dictionaries.list(b)[0].id
    with rls_platform.db.transaction(a) as session:
        assert session.execute(text("SELECT id FROM pronunciation_dictionaries WHERE id = :i"),
                               {"i": theirs}).all() == []
        assert session.execute(text("UPDATE pronunciation_dictionaries SET name = 'x' "
                                    "WHERE id = :i"), {"i": theirs}).rowcount == 0
    with pytest.raises(NotFound):
        rls_platform.dictionaries.get(a, theirs)
    with pytest.raises(NotFound):
        rls_platform.dictionaries.versions(a, [theirs])


@pytest.mark.parametrize("statement", [
    "ALTER TABLE usage_records DISABLE ROW LEVEL SECURITY",
    "ALTER TABLE usage_records NO FORCE ROW LEVEL SECURITY",
    "DROP POLICY tenant_isolation ON voices",
    "ALTER POLICY tenant_isolation ON api_keys USING (true)",
    "CREATE POLICY everything ON invoices USING (true)",
    "ALTER ROLE CURRENT_USER BYPASSRLS",
    "SET ROLE postgres",
])
def test_the_application_role_cannot_turn_row_level_security_off(rls_platform, statement):
    with pytest.raises(DBAPIError, match="must be owner|must be superuser|permission denied"):
        with rls_platform.db.engine.begin() as connection:
            connection.execute(text(statement))


def test_with_row_security_off_the_application_role_gets_an_error_not_the_rows(rls_platform):
    populate(rls_platform, "a")
    with pytest.raises(DBAPIError, match="row-level security"):
        with rls_platform.db.engine.begin() as connection:
            connection.execute(text("SET LOCAL row_security = off"))
            connection.execute(text("SELECT * FROM usage_records")).all()


def test_the_application_role_alone_refuses_to_start(postgres_schema_url, postgres_app_login,
                                                     tmp_path):
    Platform.open(platform_args(postgres_schema_url, tmp_path), migrate=True).close()
    with pytest.raises(ConfigurationError, match="ADMIN_DATABASE_URL"):
        Platform.open(platform_args(as_login(postgres_schema_url, postgres_app_login), tmp_path))


def test_which_guarantee_each_connection_gets(database_url, tmp_path):
    platform = Platform.open(platform_args(database_url, tmp_path), migrate=True)
    try:
        isolation = inspect_isolation(platform.db.engine)
        assert isolation.row_level_security is False  # SQLite, or PostgreSQL's table owner
        assert ("application filtering" if platform.db.is_sqlite else "owns the tables") in \
            isolation.detail
    finally:
        platform.close()
