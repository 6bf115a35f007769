"""Which model deployments can take a request right now, as the ingress sees it.

A model replica that dies (a crash, an OOM kill, a lost node) is replaced by Serve, and the
replacement needs tens of seconds to start. Requests routed to the deployment meanwhile would
wait in the handle until it is back (25-70 s were measured) while /api/health already says
"unhealthy". Instead the ingress refuses them at once with 503 + Retry-After.

`ModelAvailability` polls Serve's controller (the same `serve.status()` /api/health reads)
on the ingress's event loop while requests arrive, at most once per `poll_interval_s` (0.5 s),
and is told of a replica death directly by the request that saw it, so the next request is
refused without waiting for a poll. A
deployment is down when it has no RUNNING replica and Serve reports it UNHEALTHY or failed:
a deployment scaled to zero (HEALTHY) or scaling up from zero keeps taking requests, which
wait for the cold start as they should.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterable

from ray import serve

logger = logging.getLogger("qtts.availability")

_DOWN_STATUSES = frozenset({"UNHEALTHY", "DEPLOY_FAILED"})


class ModelAvailability:
    def __init__(self, deployments: Iterable[str], poll_interval_s: float = 0.5,
                 loss_hold_s: float = 5.0, stale_after_s: float = 5.0):
        self._deployments = tuple(deployments)
        self._interval = poll_interval_s
        self._loss_hold_s = loss_hold_s
        self._stale_after_s = stale_after_s
        self._down: dict[str, str] = {}  # deployment -> why it is down (from the last poll)
        self._lost: dict[str, float] = {}  # deployment -> when a request saw a replica die
        self._task: asyncio.Task | None = None
        self.polled_at = 0.0

    def reason_down(self, deployment: str) -> str | None:
        """Why `deployment` cannot serve now, or None when it can (or we do not know: a view
        older than `stale_after_s`, e.g. the first request after a quiet spell, is not
        trusted, and the request goes through while a fresh poll starts)."""
        now = time.monotonic()
        if now - self.polled_at >= self._interval:
            self.refresh()
        lost = self._lost.get(deployment)
        if lost is not None and now - lost < self._loss_hold_s:
            return "a replica was lost and is being replaced"
        if now - self.polled_at > self._stale_after_s:
            return None
        return self._down.get(deployment)

    def note_replica_lost(self, deployment: str) -> None:
        """A request saw a replica of `deployment` die: down for `loss_hold_s`, the time Serve
        may take to notice (its health check), and after that as long as polls say so."""
        self._lost[deployment] = time.monotonic()

    def note_served(self, deployment: str) -> None:
        """A call to `deployment` just succeeded: it serves, whatever the last poll said (a
        replacement that came up after that poll is not refused until the next one)."""
        self._down.pop(deployment, None)
        self._lost.pop(deployment, None)

    def refresh(self) -> None:
        """Start one poll in the background unless one is running. Polls follow requests
        (at most one per `poll_interval_s`), so an idle ingress asks the controller nothing."""
        if self._task is None or self._task.done():
            with contextlib.suppress(RuntimeError):  # no running loop: nothing to poll from
                self._task = asyncio.get_running_loop().create_task(self._poll_once())

    async def _poll_once(self) -> None:
        with contextlib.suppress(Exception):  # never fatal: a failed poll keeps the last view
            await self.poll()

    async def poll(self) -> None:
        app_name = serve.get_replica_context().app_name
        status = await asyncio.to_thread(serve.status)
        app = status.applications.get(app_name)
        if app is None:
            return
        down: dict[str, str] = {}
        for name in self._deployments:
            dep = app.deployments.get(name)
            if dep is None:
                continue
            running = int(dep.replica_states.get("RUNNING", 0))
            serve_status = str(getattr(dep.status, "value", dep.status))
            if running == 0 and serve_status in _DOWN_STATUSES:
                starting = int(dep.replica_states.get("STARTING", 0))
                down[name] = (f"no replica is running ({starting} starting)" if starting
                              else "no replica is running")
        for name in set(down) - set(self._down):
            logger.warning("model deployment %s is down: %s", name, down[name])
        for name in set(self._down) - set(down):
            logger.info("model deployment %s serves again", name)
        self._down = down
        self.polled_at = time.monotonic()
