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

import base64
import binascii
import json
from typing import Any, Literal

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.datastructures import UploadFile

from deployments.audio import RenderOptions
from deployments.audio.formats import AudioFormat
from serve_app.errors import ApiError, invalid
from serve_app.protocol.native import SEED_MAX, VoiceCloneInput, VoiceDesignInput
from serve_app.routes.common import audio_response, rid, service
from serve_app.routes.streaming import stream_response

router = APIRouter(prefix="/v1/audio", tags=["voice design and cloning"])

_RENDER_FIELDS = ("speed", "pitch", "sample_rate", "loudness_lufs")


class _Common(BaseModel):
    model_config = ConfigDict(extra="forbid")

    input: str = Field(min_length=1)
    language: str = "auto"
    response_format: AudioFormat | None = Field(None, description="Default: OUTPUT_FORMAT")
    speed: float = Field(1.0, ge=0.25, le=4.0)
    pitch: float = Field(1.0, ge=0.5, le=2.0)
    sample_rate: int | None = Field(None, ge=8000, le=48000)
    loudness_lufs: float | None = Field(None, ge=-70.0, le=-5.0)
    seed: int | None = Field(None, ge=0, le=SEED_MAX)
    max_new_tokens: int | None = Field(None, ge=2, le=8192, description="Cap on codec frames")
    stream_format: Literal["audio", "sse"] | None = Field(
        None, description="Stream while generating: 'audio' (chunked bytes) or 'sse' (events)"
    )

    def render_options(self, default_format: AudioFormat) -> RenderOptions:
        fields = {k: getattr(self, k) for k in _RENDER_FIELDS}
        return RenderOptions(format=self.response_format or default_format, **fields)


class DesignBody(_Common):
    description: str = Field(min_length=1, description="The voice to create")


class CloneBody(_Common):
    """The clone fields besides reference_audio, which arrives as a file part or data URL."""

    ref_text: str | None = None
    x_vector_only: bool = False


@router.post("/design", response_class=Response)
async def design(body: DesignBody, request: Request) -> Response:
    svc = service(request)
    inp = VoiceDesignInput(
        text=body.input, description=body.description, language=body.language, seed=body.seed,
        output=body.render_options(svc.args.audio.default_format),
        max_new_tokens=body.max_new_tokens,
    )
    if body.stream_format:
        return stream_response(await svc.stream(inp, rid(request)), body.stream_format)
    return audio_response(await svc.voice_design(inp, rid(request)))


@router.post("/clone", response_class=Response)
async def clone(request: Request) -> Response:
    svc = service(request)
    limit = svc.args.audio.max_upload_bytes
    declared = int(request.headers.get("content-length") or 0)
    if declared > limit + 256 * 1024:  # refuse before reading an oversize body
        raise ApiError(413, "audio_too_large", f"request body is {declared} bytes; "
                       f"reference_audio may be at most {limit} bytes", "reference_audio")
    content_type = request.headers.get("content-type", "")
    if content_type.startswith("multipart/form-data"):
        fields, audio = await read_multipart(request, limit)
    elif content_type.startswith("application/json"):
        fields, audio = reference_from_data_url(await read_json_object(request))
    else:
        raise ApiError(415, "unsupported_media_type",
                       "send multipart/form-data (reference_audio as a file) or application/json "
                       "(reference_audio as a data URL)", "content-type")
    try:
        body = CloneBody.model_validate(fields)
    except ValidationError as exc:
        err = exc.errors()[0]
        raise invalid(".".join(str(p) for p in err["loc"]), err["msg"]) from None
    inp = VoiceCloneInput(
        text=body.input, language=body.language, seed=body.seed, reference_audio=audio,
        ref_text=body.ref_text, x_vector_only=body.x_vector_only,
        output=body.render_options(svc.args.audio.default_format),
        max_new_tokens=body.max_new_tokens,
    )
    if body.stream_format:
        return stream_response(await svc.stream(inp, rid(request)), body.stream_format)
    return audio_response(await svc.voice_clone(inp, rid(request)))


async def read_multipart(request: Request, limit: int) -> tuple[dict[str, Any], bytes]:
    form = await request.form(max_files=1, max_fields=32)
    upload = form.get("reference_audio")
    if not isinstance(upload, UploadFile):
        raise invalid("reference_audio", "reference_audio must be sent as a file part", "missing_value")
    audio = await upload.read(limit + 1)
    if len(audio) > limit:
        raise ApiError(413, "audio_too_large", f"reference_audio is larger than {limit} bytes",
                       "reference_audio")
    fields = {k: v for k, v in form.items() if k != "reference_audio" and isinstance(v, str)}
    return fields, audio


async def read_json_object(request: Request) -> dict[str, Any]:
    """The request body as a JSON object, or a 422 naming `body`."""
    try:
        data = json.loads(await request.body())
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise invalid("body", "the request body is not valid JSON") from None
    if not isinstance(data, dict):
        raise invalid("body", "the request body must be a JSON object")
    return data


def reference_from_data_url(data: dict[str, Any]) -> tuple[dict[str, Any], bytes]:
    """Split `reference_audio` (a base64 data URL, never a URL or path) from the fields."""
    data = dict(data)
    ref = data.pop("reference_audio", None)
    if not isinstance(ref, str) or not ref.startswith("data:"):
        raise invalid("reference_audio", "reference_audio must be a data URL "
                      "(data:audio/wav;base64,...); URLs and paths are never fetched")
    header, _, payload = ref.partition(",")
    if ";base64" not in header:
        raise invalid("reference_audio", "reference_audio data URL must be base64-encoded")
    try:
        audio = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise invalid("reference_audio", "reference_audio is not valid base64") from None
    return data, audio
