"""Which model deployments can take a request right now, as the ingress sees it.

A model replica that dies (a crash, an OOM kill, a lost node) is replaced by Serve, and the
replacement needs tens of seconds to start. Serve's router makes every request that meets
the dead replica wait for it: `Router.route_and_send_request` catches the `ActorDiedError`,
drops the replica and routes the request again, and with no replica left it waits "until a
replica is available" (the controller's next replica set), 12-25 s here. The ingress answers
503 `model_unavailable` + Retry-After instead, at once:

- new requests: `reason_down` refuses them up front while a deployment is down;
- requests already waiting on the model: `call` races each model call against the
  deployment going down and cancels the call when it does (the request that met the dead
  replica is among them: Serve's router has swallowed its error and is waiting).

It learns of a death from whichever comes first: a call that fails with a replica-gone
error (`note_replica_lost`), or a poll of the controller's replicas checked against the
actors alive in Ray's GCS (serve_app.synthesis.health.deployment_states: the GCS knows of a killed
replica at once, the controller only at its next health check, 7-10 s later). Polls run on
the ingress's event loop every `poll_interval_s` while any model call is waiting, and at
most that often as requests arrive, so an idle ingress asks nothing. A deployment is down
when no replica it counts as RUNNING is alive and either one of them died or Serve reports
it UNHEALTHY or failed: a deployment scaled to zero (HEALTHY) or scaling up from zero keeps
taking requests, which wait for the cold start as they should. A lost replica of a
deployment that has others running is not "down": the router already routes around it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Iterable
from typing import TypeVar

from serve_app.synthesis.health import deployment_states

logger = logging.getLogger("qtts.availability")

T = TypeVar("T")


class DeploymentDown(Exception):
    """A model call was cancelled because its deployment went down while it waited."""

    def __init__(self, deployment: str, reason: str):
        super().__init__(f"{deployment}: {reason}")
        self.deployment = deployment
        self.reason = reason


class ModelAvailability:
    def __init__(self, deployments: Iterable[str], poll_interval_s: float = 0.5,
                 loss_hold_s: float = 5.0, stale_after_s: float = 5.0):
        self._deployments = tuple(deployments)
        self._interval = poll_interval_s
        self._loss_hold_s = loss_hold_s
        self._stale_after_s = stale_after_s
        self._down: dict[str, str] = {}  # deployment -> why it is down (from the last poll)
        self._running: dict[str, int] = {}  # deployment -> RUNNING replicas at the last poll
        self._lost: dict[str, float] = {}  # deployment -> when a request saw a replica die
        self._went_down: dict[str, asyncio.Event] = {}  # set when the deployment goes down
        self._waiting = 0  # model calls in `call` right now
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

    async def call(self, deployment: str, awaitable: Awaitable[T]) -> T:
        """Await a model call to `deployment`; if the deployment goes down before it answers,
        cancel it and raise DeploymentDown (the caller answers 503 at once). While any call
        waits, the controller is polled every `poll_interval_s`."""
        event = self._went_down.setdefault(deployment, asyncio.Event())
        task = asyncio.ensure_future(awaitable)
        down = asyncio.ensure_future(event.wait())
        self._waiting += 1
        self.refresh()
        try:
            await asyncio.wait({task, down}, return_when=asyncio.FIRST_COMPLETED)
        except BaseException:
            task.cancel()  # our caller was cancelled: so is the model call
            raise
        finally:
            self._waiting -= 1
            down.cancel()
        if task.done():
            return task.result()
        task.cancel()
        with contextlib.suppress(BaseException):
            await task
        raise DeploymentDown(deployment, self.reason_down(deployment)
                             or "its replica was lost")

    def note_replica_lost(self, deployment: str) -> None:
        """A request saw a replica of `deployment` die. With no other replica running (as
        far as the last poll knew) the deployment is down at once, for `loss_hold_s` (the
        time Serve may take to notice) and after that as long as polls say so, and the calls
        waiting on it are refused; with others running, the router serves from those."""
        if self._running.get(deployment, 1) > 1:
            self.refresh()
            return
        self._lost[deployment] = time.monotonic()
        self._mark_down(deployment)
        self.refresh()

    def note_served(self, deployment: str) -> None:
        """A call to `deployment` just succeeded: it serves, whatever the last poll said (a
        replacement that came up after that poll is not refused until the next one)."""
        self._down.pop(deployment, None)
        self._lost.pop(deployment, None)

    def refresh(self) -> None:
        """Start polling in the background unless a poll is running: one poll, then another
        every `poll_interval_s` while model calls wait."""
        if self._task is None or self._task.done():
            with contextlib.suppress(RuntimeError):  # no running loop: nothing to poll from
                self._task = asyncio.get_running_loop().create_task(self._poll_loop())

    async def _poll_loop(self) -> None:
        while True:
            with contextlib.suppress(Exception):  # never fatal: a failed poll keeps the view
                await self.poll()
            if self._waiting == 0:
                return
            await asyncio.sleep(self._interval)

    def _mark_down(self, deployment: str) -> None:
        event = self._went_down.get(deployment)
        if event is not None:
            event.set()  # wake every call waiting on it
        self._went_down[deployment] = asyncio.Event()  # later calls wait on a fresh one

    async def poll(self) -> None:
        states = await deployment_states()
        down: dict[str, str] = {}
        for name in self._deployments:
            state = states.get(name)
            if state is None:
                continue
            self._running[name] = state.running
            if reason := state.down:
                down[name] = reason
        for name in set(down) - set(self._down):
            logger.warning("model deployment %s is down: %s", name, down[name])
        for name in set(self._down) - set(down):
            logger.info("model deployment %s serves again", name)
        self._down = down
        self.polled_at = time.monotonic()
        for name in down:
            self._mark_down(name)
