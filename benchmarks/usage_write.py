"""Benchmark: what writing a request's usage row costs, one transaction per row against the
group commit the request path uses (serve_app/platform/usage_writer.py), side by side.

    python benchmarks/usage_write.py
    python benchmarks/usage_write.py --database-url postgresql+psycopg://postgres@127.0.0.1/qtts

Every finished request writes one priced usage row. The tenant here is on a plan, so each
row is priced past its included quota (the plan lookup, the month's totals, the running
price). Printed per mode: this process's CPU milliseconds and wall milliseconds per row, and
rows per transaction. "alone" writes the rows one after another, each in its own
transaction (`UsageMeter.record_priced`); "group commit, N waiting" keeps N requests'
rows waiting at once through one `UsageWriter`, as N streams ending together do. SQLite (in a
temporary directory) by default.
"""

from __future__ import annotations

import argparse
import asyncio
import platform as host
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from serve_app.platform.config import PlatformArgs  # noqa: E402
from serve_app.platform.crypto import generate_key  # noqa: E402
from serve_app.platform.plans import PlanTerms  # noqa: E402
from serve_app.platform.service import Platform  # noqa: E402
from serve_app.platform.usage import UsageRecord  # noqa: E402

TERMS = {"included": {"characters": 1000, "audio_seconds": 60, "voice_clones": 1},
         "prices": {"per_1k_characters": {"CustomVoice": 200}, "per_audio_minute": 50},
         "overage": "bill"}


def usage_row(tenant_id: str) -> UsageRecord:
    return UsageRecord(request_id=uuid.uuid4().hex, tenant_id=tenant_id, model="CustomVoice",
                       endpoint="speech", characters=64, audio_seconds=4.0, streamed=True)


def alone(platform: Platform, tenant_id: str, rows: int) -> tuple[float, float, float]:
    cpu, wall = time.process_time(), time.perf_counter()
    for _ in range(rows):
        platform.usage.record_priced(usage_row(tenant_id))
    return (time.process_time() - cpu) / rows * 1000, \
        (time.perf_counter() - wall) / rows * 1000, 1.0


def grouped(platform: Platform, tenant_id: str, rows: int, waiting: int
            ) -> tuple[float, float, float]:
    from serve_app.platform.usage_writer import UsageWriter  # only here: `--waiting` with
    # no value measures "alone" on code from before the group commit, for comparison

    writer = UsageWriter(platform.usage)

    async def request_stream(count: int) -> None:
        for _ in range(count):
            await writer.write(usage_row(tenant_id))

    async def main() -> None:
        await asyncio.gather(*(request_stream(rows // waiting) for _ in range(waiting)))

    written = rows // waiting * waiting
    cpu, wall = time.process_time(), time.perf_counter()
    asyncio.run(main())
    return (time.process_time() - cpu) / written * 1000, \
        (time.perf_counter() - wall) / written * 1000, written / writer.transactions


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", default=None,
                        help="default: SQLite in a temporary directory")
    parser.add_argument("--rows", type=int, default=640)
    parser.add_argument("--waiting", type=int, nargs="*", default=[4, 16],
                        help="rows waiting at once, per group-commit mode (none: alone only)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as data:
        platform = Platform.open(PlatformArgs(
            data_dir=data, database_url=args.database_url,
            voice_encryption_keys=generate_key()),  # required off SQLite; no voice is saved
            migrate=True)
        tenant = platform.tenants.create(f"bench-{uuid.uuid4().hex[:8]}")
        plan = f"bench-{uuid.uuid4().hex[:8]}"
        start = datetime.now(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        platform.plans.create(plan, PlanTerms.model_validate(TERMS), effective_from=start)
        platform.plans.assign(tenant.name, plan, effective_from=start)
        alone(platform, tenant.id, 20)  # warm: connections, compiled statements
        database = "SQLite" if platform.db.is_sqlite else "PostgreSQL"
        print(f"usage rows, {host.processor() or 'cpu'}, Python {host.python_version()}, "
              f"{database}, {args.rows} rows per mode, a tenant on a plan")
        print(f"{'mode':<26}{'CPU ms/row':>12}{'wall ms/row':>13}{'rows/transaction':>18}")
        base = alone(platform, tenant.id, args.rows)
        print(f"{'alone':<26}{base[0]:>12.2f}{base[1]:>13.2f}{base[2]:>18.1f}")
        for waiting in args.waiting:
            cpu, wall, per = grouped(platform, tenant.id, args.rows, waiting)
            print(f"{f'group commit, {waiting} waiting':<26}{cpu:>12.2f}{wall:>13.2f}"
                  f"{per:>18.1f}   CPU x{cpu / base[0]:.2f} of alone")
        platform.close()


if __name__ == "__main__":
    main()
