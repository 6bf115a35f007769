"""POST /v1/audio/verify: what an audio file says about its origin. The file is the request
body (any audio content type) or a multipart part named `file`; the answer names its format
and the AI-generated mark this service writes (deployments.audio.marking: generator, model
kind, request id), or `marked: false`. The file is parsed on the AudioProcessor, never here.

Content Credentials (C2PA) are not written yet (docs/platform.md, "Output marking"):
`c2pa` is always null.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.datastructures import UploadFile

from serve_app.edge.api_errors import ApiError, invalid
from serve_app.routes.common import service
from serve_app.routes.contract import errors
from serve_app.routes.uploads import read_body

router = APIRouter(prefix="/v1/audio", tags=["voice design and cloning"])


@router.post("/verify", responses=errors(400, 413, 415, 422))
async def verify(request: Request) -> dict:
    """Read back an audio file's AI-generated mark."""
    svc = service(request)
    limit = svc.args.audio.max_upload_bytes
    content_type = request.headers.get("content-type", "")
    body = await read_body(request, limit + 64 * 1024)
    if content_type.startswith("multipart/form-data"):
        data = await _file_part(request, body)
    else:
        data = body
    if not data:
        raise invalid("file", "send the audio file as the request body or as a multipart part "
                      "named file", "audio_empty")
    if len(data) > limit:
        raise ApiError(413, "audio_too_large", f"file is {len(data)} bytes; at most {limit} are "
                       "allowed", "file")
    found = await svc.read_mark(data)
    return {"object": "audio.verification", "format": found["format"],
            "marked": found["mark"] is not None, "mark": found["mark"], "c2pa": None}


async def _file_part(request: Request, body: bytes) -> bytes:
    async def replay() -> dict:
        return {"type": "http.request", "body": body, "more_body": False}

    try:
        form = await Request(request.scope, replay).form(max_files=1, max_fields=8)
    except Exception as exc:  # noqa: BLE001 - a malformed form is the client's
        raise invalid("body", f"the multipart body could not be parsed: {exc}") from None
    part = form.get("file")
    if not isinstance(part, UploadFile):
        raise invalid("file", "the audio file must be a multipart file part named file",
                      "missing_value")
    return await part.read()
