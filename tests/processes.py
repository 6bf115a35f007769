"""Ending a process group the tests started (a Ray head and everything under it)."""

from __future__ import annotations

import contextlib
import os
import signal
import time

import psutil


def group_processes(pgid: int) -> list[psutil.Process]:
    """The live processes of process group `pgid` (zombies left out)."""
    found = []
    for proc in psutil.process_iter(["pid"]):
        # a process may end between the listing and the question (getpgid's ESRCH)
        with contextlib.suppress(psutil.Error, ProcessLookupError):
            if os.getpgid(proc.pid) == pgid and proc.status() != psutil.STATUS_ZOMBIE:
                found.append(proc)
    return found


def stop_process_group(pgid: int, grace_s: float = 3.0, kill_bound_s: float = 30.0) -> None:
    """SIGTERM to the group, then SIGKILL to what is left after `grace_s`; returns once no
    process of the group is left (or after `kill_bound_s`). A Ray head started with
    `ray start --block` took ~30 s to wind down on SIGTERM (its raylet, GCS and Serve
    replicas lingered that long): a test's cluster holds nothing that needs a graceful end."""
    for sig, wait_s in ((signal.SIGTERM, grace_s), (signal.SIGKILL, kill_bound_s)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, sig)
        deadline = time.monotonic() + wait_s
        while group_processes(pgid) and time.monotonic() < deadline:
            time.sleep(0.2)
