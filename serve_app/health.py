"""What /api/health, /readyz and the handle's health() report: each deployment's state.

Serve's controller knows every deployment's status and replica counts; a model replica knows
whether its model is loaded and warmed (`ModelServer.status`). A model kind scaled to zero
(min_replicas 0) is healthy and is never woken up by a health check: only replicas already
running are asked.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field

from ray import serve
from ray.serve.handle import DeploymentHandle

#: Serve deployment statuses in which a deployment serves (or will, on demand).
SERVING = frozenset({"HEALTHY", "UPSCALING", "DOWNSCALING"})
STATUS_TIMEOUT_S = 5.0


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


async def _model_status(handle: DeploymentHandle) -> dict:
    try:
        return await asyncio.wait_for(handle.status.remote(), STATUS_TIMEOUT_S)
    except Exception as exc:  # noqa: BLE001 - health reports, never raises
        return {"loaded": False, "error": type(exc).__name__}


async def graph_health(models: Mapping[str, DeploymentHandle]) -> GraphHealth:
    """Ask Serve's controller for this application's deployments, then each running model."""
    app_name = serve.get_replica_context().app_name
    status = await asyncio.to_thread(serve.status)
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
    details = await asyncio.gather(*(_model_status(models[m]) for m in running_models))
    for name, detail in zip(running_models, details, strict=True):
        entry = report.deployments[name]
        entry.update(detail)
        if not (detail.get("loaded") and detail.get("warmed", True)):
            entry["status"] = "starting" if detail.get("loaded") else "unhealthy"
    return report
