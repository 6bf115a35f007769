"""A tenant's running totals per month (`usage_totals`): what pricing a usage row reads
instead of summing the month's usage rows, kept in the row's own transaction; always equal to
what the rows add up to, and filled from the rows already written by the migration that adds
them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from platform_testing import MARCH, at, record, rows_added_up, stored_totals, terms
from sqlalchemy import event, insert

from serve_app.platform.db import Database
from serve_app.platform.models import UsageRecordRow
from serve_app.platform.pricing import month_bounds

APRIL = datetime(2025, 4, 2, 12, tzinfo=UTC)


def test_the_totals_equal_what_the_rows_add_up_to(platform):
    """Usage before and after a plan starts mid-month, over models, operations and months, a
    request recorded twice (counted once), and two tenants."""
    acme, other = platform.tenants.create("acme"), platform.tenants.create("other")
    record(platform, acme.id, "before-plan", at(2), characters=400, audio_seconds=3.5)
    platform.plans.create("pro", terms(included={"characters": 500, "audio_seconds": 10,
                                                 "voice_clones": 1}), effective_from=MARCH)
    platform.plans.assign("acme", "pro", effective_from=at(10))
    record(platform, acme.id, "cv", at(11), characters=300, audio_seconds=8.25)
    record(platform, acme.id, "cv", at(11), characters=300, audio_seconds=8.25)  # again
    record(platform, acme.id, "vd", at(12), model="VoiceDesign", characters=900,
           audio_seconds=20.0)
    record(platform, acme.id, "v1", at(13), model="VoiceClone", operation="voice")
    record(platform, acme.id, "v2", at(14), model="VoiceClone", operation="voice")
    record(platform, acme.id, "job", at(15), operation="job", characters=50)
    record(platform, acme.id, "april", APRIL, characters=700, audio_seconds=1.0)
    record(platform, other.id, "other", at(11), characters=123, audio_seconds=2.0)
    with platform.db.admin_transaction() as session:
        added_up, stored = rows_added_up(session), stored_totals(session)
    assert stored == added_up
    march = month_bounds(at(1))[0]
    version = platform.plans.get("pro").versions[0][1]
    # past the included 500 characters: 400 + 300 used, so 200 of those 300 billable
    assert stored[(acme.id, march, version, "CustomVoice")][3] == 200 + 50
    assert stored[(acme.id, march, version, "VoiceClone")][2] == 2  # two voices saved
    assert stored[(acme.id, march, "", "CustomVoice")] == (400, 3500, 0, 0, 0)


def test_a_row_stamped_in_another_time_zone_counts_in_its_utc_month(platform):
    tenant = platform.tenants.create("acme")
    # 1 April 01:00 at UTC+2 is 31 March 23:00 UTC
    record(platform, tenant.id, "tz", datetime(2025, 4, 1, 1, tzinfo=timezone(timedelta(hours=2))),
           characters=10)
    with platform.db.admin_transaction() as session:
        stored = stored_totals(session)
        assert stored == rows_added_up(session)
    assert list(stored) == [(tenant.id, MARCH, "", "CustomVoice")]


def test_pricing_a_row_reads_the_totals_not_the_months_rows(platform):
    """However many rows the month holds, writing one more reads none of them."""
    tenant = platform.tenants.create("acme")
    platform.plans.create("pro", terms(), effective_from=MARCH)
    platform.plans.assign("acme", "pro", effective_from=MARCH)
    for i in range(20):
        record(platform, tenant.id, f"r{i}", at(2 + i % 20), characters=30, audio_seconds=1.0)
    statements: list[str] = []

    def seen(conn, cursor, statement, parameters, context, executemany):
        statements.append(statement)

    event.listen(platform.db.engine, "before_cursor_execute", seen)
    try:
        priced = record(platform, tenant.id, "one-more", at(25), characters=30).priced
    finally:
        event.remove(platform.db.engine, "before_cursor_execute", seen)
    assert priced.cost_characters > 0  # past the included 100 characters: priced
    reads = [s for s in statements if "usage_records" in s and not s.lstrip().upper()
             .startswith("INSERT")]
    assert reads == [], reads
    assert any("usage_totals" in s for s in statements)


def test_the_migration_fills_the_totals_from_the_rows_already_written(database_url):
    db = Database(database_url)
    try:
        db.migrate("0006")
        rows = [("t1", at(3), None, "CustomVoice", "synthesis", 100, 2000, 0, 0),
                ("t1", at(4), "pv1", "CustomVoice", "synthesis", 300, 5000, 250, 1000),
                ("t1", at(5), "pv1", "CustomVoice", "synthesis", 50, 500, 50, 500),
                ("t1", at(6), "pv1", "VoiceClone", "voice", 0, 0, 0, 0),
                ("t1", APRIL, "pv1", "CustomVoice", "synthesis", 10, 100, 10, 100),
                ("t2", at(7), None, "VoiceDesign", "synthesis", 70, 900, 0, 0)]
        with db.admin_transaction() as session:
            session.execute(insert(UsageRecordRow.__table__), [
                {"request_id": f"r{i}", "tenant_id": t, "created_at": when,
                 "plan_version_id": version, "model": model, "endpoint": "speech",
                 "operation": op, "characters": chars, "audio_seconds": ms / 1000,
                 "audio_ms": ms, "billable_characters": bc, "billable_audio_ms": bms,
                 "status": "ok"}
                for i, (t, when, version, model, op, chars, ms, bc, bms) in enumerate(rows)])
        db.migrate()
        march, april = month_bounds(at(1))[0], month_bounds(APRIL)[0]
        with db.admin_transaction() as session:
            assert stored_totals(session) == rows_added_up(session) == {
                ("t1", march, "", "CustomVoice"): (100, 2000, 0, 0, 0),
                ("t1", march, "pv1", "CustomVoice"): (350, 5500, 0, 300, 1500),
                ("t1", march, "pv1", "VoiceClone"): (0, 0, 1, 0, 0),
                ("t1", april, "pv1", "CustomVoice"): (10, 100, 0, 10, 100),
                ("t2", march, "", "VoiceDesign"): (70, 900, 0, 0, 0)}
    finally:
        db.dispose()
