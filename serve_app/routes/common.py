"""What every route shares: the service of this replica, the request id, audio responses."""

from __future__ import annotations

import re
import uuid

from fastapi import Request
from fastapi.responses import Response

from serve_app.protocol.native import AudioOutput
from serve_app.service import TTSService

REQUEST_ID_HEADER = "X-Request-ID"
_SAFE_ID = re.compile(r"^[A-Za-z0-9._\-]{1,64}$")


def request_id_from(request: Request) -> str:
    """The request's id: Serve's proxy puts the caller's X-Request-ID (or a new one) in the
    headers and echoes it on the response; an id unsafe to log is replaced here."""
    supplied = request.headers.get(REQUEST_ID_HEADER, "")
    return supplied if _SAFE_ID.match(supplied) else uuid.uuid4().hex


class _ReplicaService:
    """The TTSService of this ingress replica.

    Serve ships a pickled copy of the FastAPI app into the replica and builds it after the
    deployment's __init__ runs, so the app object cannot be handed the service there; each
    replica is its own process, so one slot per process is exactly one per replica.
    """

    current: TTSService | None = None


def bind_service(svc: TTSService) -> None:
    _ReplicaService.current = svc


def service(request: Request | None = None) -> TTSService:
    if _ReplicaService.current is None:
        raise RuntimeError("no TTSService bound in this process")
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
