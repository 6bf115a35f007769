"""Probes for Kubernetes and load balancers: GET /livez and GET /readyz.

/livez   the ingress answers: no downstream call, so a slow or scaled-to-zero model never
         makes a pod look dead (a failing liveness probe restarts the pod).
/readyz  the graph serves: every deployment has its replicas running with the model loaded and
         warmed, or is scaled to zero on purpose (min_replicas 0: the first request cold
         starts it). 503 with the failing deployments otherwise, so traffic is held back from
         a graph still loading or broken.
GET /api/health carries the same per-deployment detail in the seed's shape.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from serve_app.routes.common import service

router = APIRouter(tags=["operations"])


@router.get("/livez")
async def livez() -> dict:
    return {"status": "alive"}


@router.get("/readyz", responses={503: {  # its own report, not the error envelope
    "description": "Not ready: the same report, with waiting_for",
    "content": {"application/json": {"schema": {"type": "object"}}}}})
async def readyz(request: Request) -> JSONResponse:
    report = await service(request).graph_health()
    waiting = {name: d["status"] for name, d in report.deployments.items()
               if d["status"] not in ("ready", "scaled_to_zero")}
    body = {"status": "ready" if report.ready else "not_ready", "deployments": {
        name: d["status"] for name, d in report.deployments.items()}}
    if waiting:
        body["waiting_for"] = waiting
    return JSONResponse(body, status_code=200 if report.ready else 503)
