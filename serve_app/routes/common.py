"""What every route shares: the service of this replica, the request id, audio responses."""

from __future__ import annotations

from fastapi import Request
from fastapi.responses import Response

from serve_app.http_edge import REQUEST_ID_HEADER
from serve_app.protocol.native import AudioOutput
from serve_app.synthesis_service import SynthesisService

__all__ = ["REQUEST_ID_HEADER", "audio_response", "bind_service", "rid", "service"]


class _ReplicaService:
    """The SynthesisService of this ingress replica.

    Serve ships a pickled copy of the FastAPI app into the replica and builds it after the
    deployment's __init__ runs, so the app object cannot be handed the service there; each
    replica is its own process, so one slot per process is exactly one per replica.
    """

    current: SynthesisService | None = None


def bind_service(svc: SynthesisService) -> None:
    _ReplicaService.current = svc


def service(request: Request | None = None) -> SynthesisService:
    if _ReplicaService.current is None:
        raise RuntimeError("no SynthesisService bound in this process")
    return _ReplicaService.current


def rid(request: Request) -> str:
    return request.state.request_id


def audio_response(out: AudioOutput) -> Response:
    return Response(
        content=out.audio,
        media_type=out.content_type,
        headers={
            "X-Audio-Duration": f"{out.duration_seconds:.3f}",
            "X-Sample-Rate": str(out.sample_rate),
            "X-Processing-Time": f"{out.processing_seconds:.3f}",
            "X-Cache": "hit" if out.cached else "miss",
        },
    )
