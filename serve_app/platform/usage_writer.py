"""Group commit of the request path's usage rows.

Every finished request writes one usage row (serve_app.platform.usage). Written alone, each
row costs a transaction of its own besides its few statements: BEGIN and COMMIT, and on
SQLite the database's write lock and a WAL sync. `UsageWriter.write` queues the row and
returns once it is committed. One write runs at a time: it takes every row queued, groups
them by tenant and writes each tenant's rows in one transaction
(`UsageMeter.record_priced_many`, which prices each row after the ones before it, as if each
were written alone).

Nothing waits to fill a batch. A row that comes while no write is running is written at
once; rows that come during a write go into the next one. So at low load each row is still
its own transaction, and under load there are fewer transactions than rows: as many as the
writes that run, at most one per tenant each.

`write` is called from one event loop at a time (the replica's): the queue and its
waiters belong to that loop.

A transaction that fails is retried row by row, so one row that cannot be written fails
only its own request's record. A request whose waiter is cancelled still has its row
written: the row is in the queue, not in the waiter.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass

from serve_app.platform.usage import Recorded, UsageMeter, UsageRecord

logger = logging.getLogger("qtts.usage")

#: The most rows one write takes from the queue (the rest go into the next write), so one
#: transaction holds the write lock for a bounded time.
MAX_ROWS_PER_WRITE = 256


@dataclass
class _Queued:
    record: UsageRecord
    before: Callable[[], object] | None  # run in the writer's thread first (settle a lease)
    done: asyncio.Future[Recorded]


class UsageWriter:
    def __init__(self, meter: UsageMeter):
        self._meter = meter
        self._queue: list[_Queued] = []
        self._writer: asyncio.Task | None = None
        self.transactions = 0  # transactions run (rows written / transactions: the batching)

    @property
    def queued(self) -> int:
        """Rows waiting for the next write."""
        return len(self._queue)

    async def write(self, record: UsageRecord,
                    before: Callable[[], object] | None = None) -> Recorded:
        """Write `record` with the rows queued beside it; `before` runs in the writer's
        thread first (if it raises, the row is not written and the error is raised here)."""
        loop = asyncio.get_running_loop()
        queued = _Queued(record, before, loop.create_future())
        self._queue.append(queued)
        if self._writer is None or self._writer.done() or self._writer.get_loop() is not loop:
            self._writer = loop.create_task(self._drain())
        return await queued.done

    async def _drain(self) -> None:
        while self._queue:
            batch = self._queue[:MAX_ROWS_PER_WRITE]
            del self._queue[:MAX_ROWS_PER_WRITE]
            try:
                outcomes = await asyncio.to_thread(self._write, batch)
            except asyncio.CancelledError:  # the loop is going away: its waiters with it
                for queued in batch:
                    queued.done.cancel()
                raise
            except Exception as exc:  # noqa: BLE001 - every waiter hears of it
                outcomes = [exc] * len(batch)
            for queued, outcome in zip(batch, outcomes, strict=True):
                if queued.done.done():  # its waiter was cancelled: the row is written anyway
                    continue
                if isinstance(outcome, Exception):
                    queued.done.set_exception(outcome)
                else:
                    queued.done.set_result(outcome)

    def _write(self, batch: list[_Queued]) -> list[Recorded | Exception]:
        """Write a batch (in a worker thread): each tenant's rows in one transaction."""
        outcomes: list[Recorded | Exception] = [RuntimeError("not written")] * len(batch)
        by_tenant: dict[str, list[int]] = {}
        for i, queued in enumerate(batch):
            try:
                if queued.before is not None:
                    queued.before()
            except Exception as exc:  # noqa: BLE001 - its own request's error
                outcomes[i] = exc
                continue
            by_tenant.setdefault(queued.record.tenant_id, []).append(i)
        for rows in by_tenant.values():
            self.transactions += 1
            try:
                written = self._meter.record_priced_many([batch[i].record for i in rows])
            except Exception as exc:  # noqa: BLE001 - retried alone below
                if len(rows) == 1:
                    outcomes[rows[0]] = exc
                    continue
                logger.warning("a group of %d usage rows failed (%s); writing each alone",
                               len(rows), type(exc).__name__)
                written = []
                for i in rows:
                    self.transactions += 1
                    try:
                        written.append(self._meter.record_priced(batch[i].record))
                    except Exception as alone:  # noqa: BLE001 - its own request's error
                        written.append(alone)
            for i, outcome in zip(rows, written, strict=True):
                outcomes[i] = outcome
        return outcomes
