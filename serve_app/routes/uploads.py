"""The one reader of uploads (voice cloning, saved voices): multipart/form-data with the audio
as a file part, or JSON with the audio as a base64 data URL; the size is capped before the
body is read. The server never fetches a URL or opens a path given by a client."""

from __future__ import annotations

import base64
import binascii
import json
import math
from dataclasses import dataclass
from typing import Any, TypeVar

from fastapi import Request
from pydantic import BaseModel, ValidationError
from starlette.datastructures import UploadFile

from serve_app.edge.api_errors import ApiError, invalid, validation_error

BodyModel = TypeVar("BodyModel", bound=BaseModel)

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
