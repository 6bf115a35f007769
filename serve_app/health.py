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
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from ray import serve
from ray.serve.handle import DeploymentHandle

#: Serve deployment statuses in which a deployment serves (or will, on demand).
SERVING = frozenset({"HEALTHY", "UPSCALING", "DOWNSCALING"})
STATUS_TIMEOUT_S = 5.0
#: How long a model replica's own status (loaded, warmed, device) is reused.
DETAIL_MAX_AGE_S = 10.0
#: The first health check of a running model waits this long for its answer at most.
FIRST_DETAIL_WAIT_S = 2.0

_CONTROLLER = ThreadPoolExecutor(1, thread_name_prefix="serve-status")
_status_call: asyncio.Future | None = None


async def controller_status():
    """`serve.status()` on the controller thread; callers that ask while a call is out share
    its answer."""
    global _status_call
    if _status_call is None or _status_call.done():
        _status_call = asyncio.get_running_loop().run_in_executor(_CONTROLLER, serve.status)
    return await asyncio.shield(_status_call)


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


def _classify(serve_status: str, running: int) -> str:
    if serve_status not in SERVING:
        return "unhealthy" if serve_status in ("UNHEALTHY", "DEPLOY_FAILED") else "starting"
    if running == 0:
        # HEALTHY with no replica: the autoscaler's target is zero (min_replicas 0, idle).
        return "scaled_to_zero" if serve_status == "HEALTHY" else "starting"
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
                    await asyncio.wait_for(asyncio.shield(task), FIRST_DETAIL_WAIT_S)
                known = self._known.get(name)
        return known[1] if known is not None else {"loaded": False, "error": "no answer yet"}

    async def _ask(self, name: str, handle: DeploymentHandle) -> None:
        try:
            detail = await asyncio.wait_for(handle.status.remote(), STATUS_TIMEOUT_S)
        except Exception as exc:  # noqa: BLE001 - health reports, never raises
            detail = {"loaded": False, "error": type(exc).__name__}
        self._known[name] = (time.monotonic(), detail)


async def graph_health(models: Mapping[str, DeploymentHandle],
                       details: ModelDetails) -> GraphHealth:
    """Ask Serve's controller for this application's deployments, then each running model
    (through `details`)."""
    app_name = serve.get_replica_context().app_name
    status = await controller_status()
    app = status.applications.get(app_name)
    report = GraphHealth(models=tuple(models))
    if app is None:
        return report
    for name, dep in app.deployments.items():
        running = int(dep.replica_states.get("RUNNING", 0))
        report.deployments[name] = {
            "status": _classify(str(dep.status.value if hasattr(dep.status, "value") else dep.status),
                                running),
            "serve_status": str(getattr(dep.status, "value", dep.status)),
            "replicas_running": running,
            "replicas_starting": int(dep.replica_states.get("STARTING", 0)),
        }
    running_models = [m for m in models if report.deployments.get(m, {}).get("replicas_running")]
    answers = await asyncio.gather(*(details.get(m, models[m]) for m in running_models))
    for name, detail in zip(running_models, answers, strict=True):
        entry = report.deployments[name]
        entry.update(detail)
        if not (detail.get("loaded") and detail.get("warmed", True)):
            entry["status"] = "starting" if detail.get("loaded") else "unhealthy"
    return report
