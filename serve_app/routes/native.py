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
import math
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.datastructures import UploadFile

from deployments.audio import RenderOptions
from deployments.audio.formats import AudioFormat
from serve_app.api_contract import audio_content, errors, upload_body
from serve_app.errors import ApiError, invalid, validation_error
from serve_app.protocol.fields import (
    TRANSCRIPT_UNLESS_X_VECTOR,
    Flag,
    MaxNewTokens,
    MinFrames,
    OpenAISpeed,
    OutputSampleRate,
    Seed,
    SpeechText,
    streaming_keeps,
)
from serve_app.protocol.native import VoiceCloneInput, VoiceDesignInput
from serve_app.routes.common import service, speech_response

router = APIRouter(prefix="/v1/audio", tags=["voice design and cloning"])

BodyModel = TypeVar("BodyModel", bound=BaseModel)

_RENDER_FIELDS = ("speed", "pitch", "sample_rate", "loudness_lufs")


_STREAMING = streaming_keeps("stream_format", ["audio", "sse"], speed=1.0, pitch=1.0,
                             loudness_lufs=None)


class _Common(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra=_STREAMING)

    input: SpeechText
    language: str = "auto"
    response_format: AudioFormat | None = Field(None, description="Default: OUTPUT_FORMAT")
    speed: OpenAISpeed = 1.0
    pitch: float = Field(1.0, ge=0.5, le=2.0)
    sample_rate: OutputSampleRate | None = None
    loudness_lufs: float | None = Field(None, ge=-70.0, le=-5.0)
    seed: Seed | None = None
    max_new_tokens: MaxNewTokens | None = None
    min_frames: MinFrames | None = None
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

    model_config = ConfigDict(json_schema_extra={"allOf": [_STREAMING,
                                                           TRANSCRIPT_UNLESS_X_VECTOR]})

    ref_text: str | None = None
    x_vector_only: Flag = False


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


#: Room for the form fields or JSON around the audio in an upload's body.
_BODY_OVERHEAD = 256 * 1024


@dataclass(frozen=True)
class Upload:
    """An upload's fields and its `reference_audio` bytes (None when it has none), read by
    `read_upload`. `form` tells how fields arrived: form fields are strings ("7", "true")."""

    fields: dict[str, Any]
    audio: bytes | None
    form: bool

    def validated(self, model: type[BodyModel]) -> BodyModel:
        try:
            if self.form:
                return model.model_validate_strings(self.fields)
            return model.model_validate(self.fields)
        except ValidationError as exc:
            raise validation_error(exc) from None


async def read_upload(request: Request, limit: int) -> Upload:
    """The one reader of uploads (clone, saved voices): multipart/form-data with the audio as
    a file part, or JSON with the audio as a base64 data URL.

    `limit` bounds the decoded audio, whatever the encoding: the body may be as large as the
    audio's base64 form plus fields, is read with that cap (a chunked body without
    Content-Length is cut off as soon as it passes it), and the audio is checked after
    decoding, so the same file is accepted or refused (413) on both paths."""
    content_type = request.headers.get("content-type", "")
    if content_type.startswith("multipart/form-data"):
        body = await read_body(request, limit + _BODY_OVERHEAD)
        fields, audio = await _parse_multipart(request, body)
        form = True
    elif content_type.startswith("application/json"):
        body = await read_body(request, math.ceil(limit / 3) * 4 + _BODY_OVERHEAD)
        fields = json_object(body)
        audio = reference_from_data_url(fields) if "reference_audio" in fields else None
        form = False
    else:
        raise ApiError(415, "unsupported_media_type",
                       "send multipart/form-data (reference_audio as a file) or application/json "
                       "(reference_audio as a data URL)", "content-type")
    if audio is not None and len(audio) > limit:
        raise _too_large(f"reference_audio is {len(audio)} bytes", limit)
    return Upload(fields, audio, form)


def _too_large(what: str, limit: int) -> ApiError:
    return ApiError(413, "audio_too_large", f"{what}; reference_audio may be at most {limit} "
                    "bytes (the decoded audio file)", "reference_audio")


async def read_body(request: Request, cap: int) -> bytes:
    """The request body, refused with 413 once it passes `cap` bytes (before reading further
    when Content-Length says so)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > cap:
        raise ApiError(413, "request_too_large", f"the request body is {declared} bytes; at "
                       f"most {cap} are read", "reference_audio")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > cap:
            raise ApiError(413, "request_too_large", f"the request body passed {cap} bytes, "
                           "the most that is read", "reference_audio")
        chunks.append(chunk)
    return b"".join(chunks)


async def _parse_multipart(request: Request, body: bytes) -> tuple[dict[str, Any], bytes | None]:
    async def replay() -> dict:
        return {"type": "http.request", "body": body, "more_body": False}

    try:
        form = await Request(request.scope, replay).form(max_files=1, max_fields=32)
    except Exception as exc:  # noqa: BLE001 - a malformed form is the client's
        raise invalid("body", f"the multipart body could not be parsed: {exc}") from None
    part = form.get("reference_audio")
    if part is not None and not isinstance(part, UploadFile):
        raise invalid("reference_audio", "reference_audio must be sent as a file part")
    audio = await part.read() if part is not None else None
    fields = {k: v for k, v in form.items() if k != "reference_audio" and isinstance(v, str)}
    return fields, audio


def json_object(body: bytes) -> dict[str, Any]:
    """A request body as a JSON object, or a 422 naming `body`."""
    try:
        data = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise invalid("body", "the request body is not valid JSON") from None
    if not isinstance(data, dict):
        raise invalid("body", "the request body must be a JSON object")
    return data


def reference_from_data_url(fields: dict[str, Any]) -> bytes:
    """Take `reference_audio` (a base64 data URL, never a URL or path) out of `fields`."""
    ref = fields.pop("reference_audio", None)
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
    return audio
