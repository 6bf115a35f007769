"""Group commit of usage rows (serve_app.platform.usage_writer): the rows of requests that
finish while a write runs are written together, one transaction per tenant, and each costs
exactly what it would have cost written alone."""

from __future__ import annotations

import asyncio
import threading

import pytest
from platform_testing import MARCH, at, rows_added_up, stored_totals, terms
from sqlalchemy import select

from serve_app.platform.models import UsageRecordRow
from serve_app.platform.usage import UsageMeter, UsageRecord
from serve_app.platform.usage_writer import UsageWriter

WAIT_S = 30.0


def row(tenant_id: str, request_id: str, hour: int, *, characters: int = 0,
        audio_seconds: float = 0.0) -> UsageRecord:
    return UsageRecord(request_id=request_id, tenant_id=tenant_id, model="CustomVoice",
                       endpoint="speech", characters=characters,
                       audio_seconds=audio_seconds, streamed=True,
                       created_at=at(11, hour))


async def until(condition) -> None:
    async with asyncio.timeout(WAIT_S):
        while not condition():
            await asyncio.sleep(0.01)


class Hold:
    """A `before` that holds its write's thread until released, so rows queue behind it."""

    def __init__(self):
        self.started, self.released = threading.Event(), threading.Event()

    def __call__(self) -> None:
        self.started.set()
        self.released.wait(WAIT_S)


async def held_write(writer: UsageWriter, first: UsageRecord) -> tuple[Hold, asyncio.Task]:
    """Start writing `first` and return once its write is held (release it with
    `hold.released.set()`): rows written meanwhile wait in the queue."""
    hold = Hold()
    head = asyncio.create_task(writer.write(first, before=hold))
    await until(hold.started.is_set)
    return hold, head


async def held_then_queued(writer: UsageWriter, first: UsageRecord,
                           queued: list[UsageRecord]) -> list:
    """Write `first` with its write held until every row of `queued` waits behind it, so
    they make one group; what each write returned (or raised), in order."""
    hold, head = await held_write(writer, first)
    rest = [asyncio.create_task(writer.write(r)) for r in queued]
    await until(lambda: writer.queued == len(queued))
    hold.released.set()
    return await asyncio.gather(head, *rest, return_exceptions=True)


def charged(platform, tenant_id: str) -> list[tuple]:
    with platform.db.admin_transaction() as session:
        rows = session.scalars(select(UsageRecordRow).where(UsageRecordRow.tenant_id == tenant_id)
                               .order_by(UsageRecordRow.created_at))
        return [(r.characters, r.audio_ms, r.billable_characters, r.billable_audio_ms,
                 r.cost_characters, r.cost_audio, r.cost) for r in rows]


def test_rows_that_wait_behind_a_write_are_written_together_and_priced_as_if_alone(platform):
    """Twelve rows crossing the plan's included characters and audio: the eleven that waited
    behind the first go in one transaction, and every row costs what the same row costs
    written alone (another tenant on the same plan, row by row)."""
    grouped, alone = platform.tenants.create("grouped"), platform.tenants.create("alone")
    platform.plans.create("pro", terms(), effective_from=MARCH)
    platform.plans.assign("grouped", "pro", effective_from=MARCH)
    platform.plans.assign("alone", "pro", effective_from=MARCH)
    amounts = [(17 + 9 * i, 3.25 + 1.5 * i) for i in range(12)]
    writer = UsageWriter(platform.usage)
    rows = [row(grouped.id, f"g{i}", i, characters=c, audio_seconds=s)
            for i, (c, s) in enumerate(amounts)]
    outcomes = asyncio.run(held_then_queued(writer, rows[0], rows[1:]))
    assert [o.recorded for o in outcomes] == [True] * 12
    assert writer.transactions == 2
    for i, (c, s) in enumerate(amounts):
        platform.usage.record_priced(row(alone.id, f"a{i}", i, characters=c, audio_seconds=s))
    assert charged(platform, grouped.id) == charged(platform, alone.id)
    assert sum(r[6] for r in charged(platform, grouped.id)) > 0  # past the included quota
    with platform.db.admin_transaction() as session:
        assert stored_totals(session) == rows_added_up(session)


def test_a_write_takes_one_transaction_per_tenant(platform):
    acme, other = platform.tenants.create("acme"), platform.tenants.create("other")
    writer = UsageWriter(platform.usage)
    queued = [row(acme.id, "a1", 2, characters=10), row(other.id, "o1", 3, characters=20),
              row(acme.id, "a2", 4, characters=30), row(other.id, "o2", 5, characters=40)]
    outcomes = asyncio.run(held_then_queued(writer, row(acme.id, "a0", 1, characters=5),
                                            queued))
    assert all(o.recorded for o in outcomes)
    assert writer.transactions == 1 + 2
    assert [r[0] for r in charged(platform, acme.id)] == [5, 10, 30]
    assert [r[0] for r in charged(platform, other.id)] == [20, 40]
    with platform.db.admin_transaction() as session:
        assert stored_totals(session) == rows_added_up(session)


def test_a_request_recorded_twice_in_one_group_counts_once(platform):
    acme = platform.tenants.create("acme")
    writer = UsageWriter(platform.usage)
    outcomes = asyncio.run(held_then_queued(writer, row(acme.id, "first", 1, characters=5), [
        row(acme.id, "twice", 2, characters=50), row(acme.id, "twice", 2, characters=50)]))
    assert [o.recorded for o in outcomes] == [True, True, False]
    with platform.db.admin_transaction() as session:
        assert stored_totals(session) == rows_added_up(session)
        assert sum(t[0] for t in stored_totals(session).values()) == 55


def test_a_row_that_cannot_be_written_fails_only_its_own_request(platform, monkeypatch):
    """The group's transaction fails, so its rows are written one by one: the others are
    written, and only the bad row's waiter gets the error. A row whose `before` raises is
    not written at all."""
    acme = platform.tenants.create("acme")
    write_one = UsageMeter._write

    def failing(session, usage):
        if usage.request_id == "bad":
            raise RuntimeError("this row cannot be written")
        return write_one(session, usage)

    monkeypatch.setattr(UsageMeter, "_write", staticmethod(failing))
    writer = UsageWriter(platform.usage)

    async def main():
        hold, head = await held_write(writer, row(acme.id, "head", 1, characters=1))

        def refuse():
            raise ValueError("the lease could not be settled")

        rest = [asyncio.create_task(writer.write(row(acme.id, "ok1", 2, characters=2))),
                asyncio.create_task(writer.write(row(acme.id, "bad", 3, characters=3))),
                asyncio.create_task(writer.write(row(acme.id, "unsettled", 4, characters=4),
                                                 before=refuse)),
                asyncio.create_task(writer.write(row(acme.id, "ok2", 5, characters=5)))]
        await until(lambda: writer.queued == 4)
        hold.released.set()
        return await asyncio.gather(head, *rest, return_exceptions=True)

    head, ok1, bad, unsettled, ok2 = asyncio.run(main())
    assert head.recorded and ok1.recorded and ok2.recorded
    assert isinstance(bad, RuntimeError)
    assert isinstance(unsettled, ValueError)
    assert [r[0] for r in charged(platform, acme.id)] == [1, 2, 5]


def test_a_cancelled_waiter_still_has_its_row_written(platform):
    acme = platform.tenants.create("acme")
    writer = UsageWriter(platform.usage)

    async def main():
        hold, head = await held_write(writer, row(acme.id, "head", 1, characters=1))
        gone = asyncio.create_task(writer.write(row(acme.id, "gone", 2, characters=2)))
        await until(lambda: writer.queued == 1)
        gone.cancel()
        hold.released.set()
        with pytest.raises(asyncio.CancelledError):
            await gone
        await head
        return await writer.write(row(acme.id, "after", 3, characters=3))  # behind "gone"

    assert asyncio.run(main()).recorded
    assert [r[0] for r in charged(platform, acme.id)] == [1, 2, 3]
