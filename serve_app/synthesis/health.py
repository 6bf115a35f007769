"""What /api/health, /readyz and the handle's health() report: each deployment's state.

Serve's controller knows every deployment's status and replica counts; a model replica knows
whether its model is loaded and warmed (`ModelServer.status`). A model kind scaled to zero
(min_replicas 0) is healthy and is never woken up by a health check: only replicas already
running are asked.

Probes never queue behind synthesis: the controller is asked on a thread of its own (not the
default pool the request path's database and limiter calls share), one call at a time shared
by every prober that asks meanwhile; and a model replica's own answer, which waits for a slot
behind the requests that replica is running, is kept for `DETAIL_MAX_AGE_S` and refreshed in
the background, so a health check under overload answers from what is known.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import ray
from ray import serve
from ray.serve.handle import DeploymentHandle

#: Serve deployment statuses in which a deployment serves (or will, on demand).
SERVING = frozenset({"HEALTHY", "UPSCALING", "DOWNSCALING"})
#: Statuses in which a deployment with no running replica cannot serve.
DOWN_STATUSES = frozenset({"UNHEALTHY", "DEPLOY_FAILED"})
STATUS_TIMEOUT_S = 5.0
#: How long a model replica's own status (loaded, warmed, device) is reused.
DETAIL_MAX_AGE_S = 10.0
#: The first health check of a running model waits this long for its answer at most.
FIRST_DETAIL_WAIT_S = 2.0

_CONTROLLER = ThreadPoolExecutor(1, thread_name_prefix="serve-status")
_states_call: asyncio.Future | None = None
_states_at = -math.inf  # when the last read answered
#: A read of the deployments' states is shared by every caller for this long.
STATES_MAX_AGE_S = 0.25


@dataclass(frozen=True)
class DeploymentState:
    """One deployment as Serve's controller and Ray's GCS see it now."""

    serve_status: str  # HEALTHY, UPSCALING, UNHEALTHY, ...
    running: int  # replicas RUNNING whose actor is alive
    starting: int
    dead: int  # replicas the controller still counts RUNNING whose actor has died

    @property
    def down(self) -> str | None:
        """Why it cannot serve now, or None. Scaled to zero (HEALTHY, nothing running) or
        scaling up from zero is not down: a request waits for the cold start."""
        if self.running:
            return None
        if self.dead:
            return "its replica died and is being replaced"
        if self.serve_status in DOWN_STATUSES:
            return (f"no replica is running ({self.starting} starting)" if self.starting
                    else "no replica is running")
        return None


def _read_states(app_name: str) -> dict[str, DeploymentState]:
    """The controller's replicas of `app_name`, checked against the actors alive in the GCS:
    the controller learns of a killed replica at its next health check (7-10 s were seen),
    the GCS at once (a dead replica's actor name is released)."""
    from ray.serve.context import _get_global_client  # what serve.status() itself uses

    details = _get_global_client().get_serve_details()
    alive = {a["name"] for a in ray.util.list_named_actors(all_namespaces=True)}
    app = details.get("applications", {}).get(app_name)
    states: dict[str, DeploymentState] = {}
    for name, dep in (app or {}).get("deployments", {}).items():
        replicas = [(_text(r["state"]), r.get("actor_name")) for r in dep.get("replicas", ())]
        states[name] = DeploymentState(
            serve_status=_text(dep.get("status")),
            running=sum(1 for st, actor in replicas if st == "RUNNING" and actor in alive),
            starting=sum(1 for st, _ in replicas if st == "STARTING"),
            dead=sum(1 for st, actor in replicas if st == "RUNNING" and actor not in alive))
    return states


def _text(value) -> str:
    return str(getattr(value, "value", value))


async def deployment_states() -> dict[str, DeploymentState]:
    """This application's deployments now, read on the controller thread; callers that ask
    while a read is out, or within STATES_MAX_AGE_S of its answer, share it."""
    global _states_call, _states_at
    fresh = time.monotonic() - _states_at < STATES_MAX_AGE_S
    if _states_call is None or (_states_call.done() and not fresh):
        _states_at = math.inf  # until this read answers: shared while out
        app_name = serve.get_replica_context().app_name
        _states_call = asyncio.get_running_loop().run_in_executor(
            _CONTROLLER, _read_states, app_name)
        _states_call.add_done_callback(_answered)
    return await asyncio.shield(_states_call)


def _answered(call: asyncio.Future) -> None:
    global _states_at
    _states_at = -math.inf if call.cancelled() or call.exception() else time.monotonic()


@dataclass
class GraphHealth:
    deployments: dict[str, dict] = field(default_factory=dict)
    models: tuple[str, ...] = ()

    def _state(self, name: str) -> str:
        return self.deployments.get(name, {}).get("status", "missing")

    @property
    def ready(self) -> bool:
        """Every deployment serves: running with its model loaded, or scaled to zero."""
        return bool(self.deployments) and all(
            d["status"] in ("ready", "scaled_to_zero") for d in self.deployments.values()
        )

    @property
    def models_loaded(self) -> bool:
        return all(self._state(m) in ("ready", "scaled_to_zero") for m in self.models)

    @property
    def device(self) -> str:
        return next((self.deployments[m]["device"] for m in self.models
                     if "device" in self.deployments.get(m, {})), "unknown")


def _classify(state: DeploymentState) -> str:
    if state.down:
        return "unhealthy"
    if state.serve_status not in SERVING:
        return "starting"
    if state.running == 0:
        # HEALTHY with no replica: the autoscaler's target is zero (min_replicas 0, idle).
        return "scaled_to_zero" if state.serve_status == "HEALTHY" else "starting"
    return "ready"


def _max_age(detail: dict) -> float:
    """A ready model's status is kept for DETAIL_MAX_AGE_S; one still loading, 1 s."""
    return DETAIL_MAX_AGE_S if detail.get("loaded") and detail.get("warmed", True) else 1.0


class ModelDetails:
    """Each model deployment's own status (`ModelServer.status`), kept for
    `DETAIL_MAX_AGE_S`: a stale one is refreshed in the background and served meanwhile."""

    def __init__(self) -> None:
        self._known: dict[str, tuple[float, dict]] = {}
        self._asking: dict[str, asyncio.Task] = {}

    async def get(self, name: str, handle: DeploymentHandle) -> dict:
        known = self._known.get(name)
        if known is None or time.monotonic() - known[0] > _max_age(known[1]):
            task = self._asking.get(name)
            if task is None or task.done():
                task = asyncio.get_running_loop().create_task(self._ask(name, handle))
                self._asking[name] = task
            if known is None:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(FIRST_DETAIL_WAIT_S):
                        await asyncio.shield(task)
                known = self._known.get(name)
        return known[1] if known is not None else {"loaded": False, "error": "no answer yet"}

    async def _ask(self, name: str, handle: DeploymentHandle) -> None:
        try:
            async with asyncio.timeout(STATUS_TIMEOUT_S):
                detail = await handle.status.remote()
        except Exception as exc:  # noqa: BLE001 - health reports, never raises
            detail = {"loaded": False, "error": type(exc).__name__}
        self._known[name] = (time.monotonic(), detail)


async def graph_health(models: Mapping[str, DeploymentHandle],
                       details: ModelDetails) -> GraphHealth:
    """This application's deployments (`deployment_states`), then each running model's own
    status (through `details`)."""
    report = GraphHealth(models=tuple(models))
    for name, state in (await deployment_states()).items():
        report.deployments[name] = {
            "status": _classify(state),
            "serve_status": state.serve_status,
            "replicas_running": state.running,
            "replicas_starting": state.starting,
        }
    running_models = [m for m in models if report.deployments.get(m, {}).get("replicas_running")]
    answers = await asyncio.gather(*(details.get(m, models[m]) for m in running_models))
    for name, detail in zip(running_models, answers, strict=True):
        entry = report.deployments[name]
        entry.update(detail)
        if not (detail.get("loaded") and detail.get("warmed", True)):
            entry["status"] = "starting" if detail.get("loaded") else "unhealthy"
    return report
