"""Voice design and voice cloning over HTTP, returning audio bytes.

POST /v1/audio/design  JSON {input, description, language, response_format, speed, pitch,
                            sample_rate, loudness_lufs, seed, max_new_tokens, stream_format}
POST /v1/audio/clone   multipart/form-data (reference_audio as a file) or JSON (reference_audio
                       as a data URL `data:audio/...;base64,...`), plus {input, ref_text,
                       x_vector_only, language, response_format, speed, pitch, sample_rate,
                       loudness_lufs, seed, max_new_tokens, stream_format}
stream_format "audio" or "sse" streams the audio while it is generated (docs/streaming.md).
The server never fetches a URL or opens a path given by a client: only bytes are accepted.
"""

from __future__ import annotations

from typing import TypeVar

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import BaseModel

from serve_app.edge.api_errors import invalid
from serve_app.protocol.audio_api import CloneBody, DesignBody
from serve_app.protocol.speech import VoiceCloneInput, VoiceDesignInput
from serve_app.routes.common import service, speech_response
from serve_app.routes.contract import audio_content, errors, upload_body
from serve_app.routes.uploads import read_upload

router = APIRouter(prefix="/v1/audio", tags=["voice design and cloning"])

BodyModel = TypeVar("BodyModel", bound=BaseModel)

#: What design and clone answer: audio, or an error of the request, its tenant or the model.
_SPEECH_ANSWERS = {200: audio_content("The audio in response_format; streamed with "
                                      "stream_format", sse=True),
                   **errors(400, 404, 422, 429, 503, 504)}


@router.post("/design", response_class=Response, responses=_SPEECH_ANSWERS)
async def design(body: DesignBody, request: Request) -> Response:
    svc = service(request)
    inp = VoiceDesignInput(
        text=body.input, description=body.description, language=body.language, seed=body.seed,
        output=body.render_options(svc.args.audio.default_format),
        max_new_tokens=body.max_new_tokens, min_frames=body.min_frames,
    )
    return await speech_response(request, inp, body.stream_format)


@router.post("/clone", response_class=Response,
             responses={**_SPEECH_ANSWERS, **errors(413, 415)},
             openapi_extra=upload_body(CloneBody))
async def clone(request: Request) -> Response:
    svc = service(request)
    upload = await read_upload(request, svc.args.audio.max_upload_bytes)
    if upload.audio is None:
        raise invalid("reference_audio", "reference_audio is required: a file part "
                      "(multipart) or a data URL (JSON)", "missing_value")
    body = upload.validated(CloneBody)
    audio = upload.audio
    inp = VoiceCloneInput(
        text=body.input, language=body.language, seed=body.seed, reference_audio=audio,
        ref_text=body.ref_text, x_vector_only=body.x_vector_only,
        output=body.render_options(svc.args.audio.default_format),
        max_new_tokens=body.max_new_tokens, min_frames=body.min_frames,
    )
    return await speech_response(request, inp, body.stream_format)

