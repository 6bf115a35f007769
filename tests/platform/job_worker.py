"""A job runner in its own process, for the test that kills one mid-job (kill -9).

    python tests/platform/job_worker.py DATABASE_URL DATA_DIR KEYS MARKER_FILE [ADMIN_DATABASE_URL]

Its synthesis writes MARKER_FILE and then never returns, like a process that hangs or dies.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from serve_app.platform.config import JobArgs, PlatformArgs
from serve_app.platform.service import Platform


async def main(database_url: str, data_dir: str, keys: str, marker: str,
               admin_database_url: str | None = None) -> None:
    args = PlatformArgs(database_url=database_url, admin_database_url=admin_database_url,
                        data_dir=data_dir, voice_encryption_keys=keys,
                        jobs=JobArgs(lease_s=30, heartbeat_s=0.05, poll_interval_s=0.05))
    platform = Platform.open(args)

    async def synthesize(job, segment, index):
        Path(marker).write_text(job.id)
        await asyncio.Event().wait()

    platform.job_runner(synthesize, encode=None).start()  # type: ignore[arg-type]
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:6]))
