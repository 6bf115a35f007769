"""POST /v1/audio/verify: what an audio file says about its origin. The file is the request
body (any audio content type) or a multipart part named `file`; the answer names its format
and the AI-generated mark this service writes (deployments.audio.marking: generator, model
kind, request id), or `marked: false`; and its C2PA Content Credentials as the c2pa library's
own Reader validates them (`{valid, trusted, signer, assertions, validation_errors, ...}`), or
`c2pa: null` when it carries no manifest. The file is parsed on the AudioProcessor, never here.
"""

from __future__ import annotations

from fastapi import APIRouter, Request

from serve_app.routes.common import service
from serve_app.routes.contract import errors
from serve_app.routes.uploads import read_audio_file

router = APIRouter(prefix="/v1/audio", tags=["voice design and cloning"])


@router.post("/verify", responses=errors(400, 413, 415, 422))
async def verify(request: Request) -> dict:
    """Read back an audio file's AI-generated mark and C2PA manifest."""
    svc = service(request)
    data = await read_audio_file(request, svc.args.audio.max_upload_bytes)
    found = await svc.read_mark(data)
    return {"object": "audio.verification", "format": found["format"],
            "marked": found["mark"] is not None, "mark": found["mark"], "c2pa": found["c2pa"]}
