"""The one reader of uploads (voice cloning, saved voices): multipart/form-data with the audio
as file parts, or JSON with the audio as base64 data URLs; the size is capped before the
body is read. A single audio file to inspect (verify, analyze) is the body or a part `file`. An upload holds `reference_audio` and, where consent is checked, the
`consent_audio` of the speaker reading their consent statement. The server never fetches a
URL or opens a path given by a client."""

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

#: The audio an upload may hold: the voice to clone, and the speaker reading their consent.
AUDIO_PARTS = ("reference_audio", "consent_audio")
#: Room for the form fields or JSON around the audio in an upload's body.
_BODY_OVERHEAD = 256 * 1024


@dataclass(frozen=True)
class Upload:
    """An upload's fields, its `reference_audio` bytes and its `consent_audio` bytes (None
    when it has none), read by `read_upload`. `form` tells how fields arrived: form fields
    are strings ("7", "true")."""

    fields: dict[str, Any]
    audio: bytes | None
    form: bool
    consent_audio: bytes | None = None

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
    decoding, so the same file is accepted or refused (413) on both paths. Each of the two
    audio parts may be `limit` bytes."""
    content_type = request.headers.get("content-type", "")
    if content_type.startswith("multipart/form-data"):
        body = await read_body(request, 2 * limit + _BODY_OVERHEAD)
        fields, parts = await _parse_multipart(request, body)
        form = True
    elif content_type.startswith("application/json"):
        body = await read_body(request, 2 * math.ceil(limit / 3) * 4 + _BODY_OVERHEAD)
        fields = json_object(body)
        parts = {name: audio_from_data_url(fields, name) for name in AUDIO_PARTS
                 if name in fields}
        form = False
    else:
        raise ApiError(415, "unsupported_media_type",
                       "send multipart/form-data (reference_audio as a file) or application/json "
                       "(reference_audio as a data URL)", "content-type")
    for name, audio in parts.items():
        if len(audio) > limit:
            raise ApiError(413, "audio_too_large", f"{name} is {len(audio)} bytes; {name} "
                           f"may be at most {limit} bytes (the decoded audio file)", name)
    return Upload(fields, parts.get("reference_audio"), form, parts.get("consent_audio"))


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


async def _parse_multipart(request: Request, body: bytes
                           ) -> tuple[dict[str, Any], dict[str, bytes]]:
    async def replay() -> dict:
        return {"type": "http.request", "body": body, "more_body": False}

    try:
        form = await Request(request.scope, replay).form(max_files=len(AUDIO_PARTS),
                                                         max_fields=32)
    except Exception as exc:  # noqa: BLE001 - a malformed form is the client's
        raise invalid("body", f"the multipart body could not be parsed: {exc}") from None
    parts: dict[str, bytes] = {}
    for name in AUDIO_PARTS:
        part = form.get(name)
        if part is not None and not isinstance(part, UploadFile):
            raise invalid(name, f"{name} must be sent as a file part")
        if part is not None:
            parts[name] = await part.read()
    fields = {k: v for k, v in form.items() if k not in AUDIO_PARTS and isinstance(v, str)}
    return fields, parts


async def read_audio_file(request: Request, limit: int) -> bytes:
    """One audio file sent whole (POST /v1/audio/verify, /v1/audio/analyze): the request body
    (any audio content type) or a multipart part named `file`; 422 when none was sent, 413
    past `limit` bytes."""
    body = await read_body(request, limit + 64 * 1024)
    if request.headers.get("content-type", "").startswith("multipart/form-data"):
        data = await _file_part(request, body)
    else:
        data = body
    if not data:
        raise invalid("file", "send the audio file as the request body or as a multipart part "
                      "named file", "audio_empty")
    if len(data) > limit:
        raise ApiError(413, "audio_too_large", f"file is {len(data)} bytes; at most {limit} are "
                       "allowed", "file")
    return data


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


def json_object(body: bytes) -> dict[str, Any]:
    """A request body as a JSON object, or a 422 naming `body`."""
    try:
        data = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise invalid("body", "the request body is not valid JSON") from None
    if not isinstance(data, dict):
        raise invalid("body", "the request body must be a JSON object")
    return data


def audio_from_data_url(fields: dict[str, Any], name: str = "reference_audio") -> bytes:
    """Take the audio part `name` (a base64 data URL, never a URL or path) out of `fields`."""
    ref = fields.pop(name, None)
    if not isinstance(ref, str) or not ref.startswith("data:"):
        raise invalid(name, f"{name} must be a data URL (data:audio/wav;base64,...); URLs and "
                      "paths are never fetched")
    header, _, payload = ref.partition(",")
    if ";base64" not in header:
        raise invalid(name, f"{name} data URL must be base64-encoded")
    try:
        audio = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise invalid(name, f"{name} is not valid base64") from None
    return audio
