"""The published contract (/openapi.json): FastAPI's schema of the routes, completed with
what FastAPI cannot see, so that the document says exactly what the server answers.

Routes declare what only they answer, next to their code: `errors(404, 409)` for the error
statuses they raise, `audio_content()` for audio bodies, `upload_body()` for the multipart
and data-URL uploads they read themselves. `contract_openapi` then adds, for every operation:
- security: `Authorization: Bearer` or `X-API-Key` on every path that is not public
  (serve_app.edge.path_table); a route that reads an optional key declares its own;
- 401 and 403 where a key is required or read (no key, an unknown or revoked one; a key
  scoped elsewhere, a disabled tenant); 404 on paths with a parameter; 422 wherever a
  parameter or a body is read, and 400 for a body that is not text; 500 everywhere (the edge turns any failure into one, its
  message naming the request id);
- the error envelope (serve_app.protocol.envelope) as the schema of every error status, in
  place of FastAPI's `{"detail": ...}`, which the server never sends;
- `model`: the models this app deploys and their OpenAI aliases (names are matched
  case-insensitively; the document lists their spelling);
- the longest text each text field takes, from the deployment's settings (`max_text_chars`,
  `max_instruction_chars`, `jobs.max_text_chars`).
tests/graph/test_contract.py fuzzes every operation against the document it serves.
"""

from __future__ import annotations

import copy
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel

from deployments.audio.formats import FORMAT_INFO
from serve_app.app.args import AppArgs
from serve_app.edge.path_table import is_public
from serve_app.protocol.envelope import ErrorEnvelope

#: What each error status means on this service (docs/api.md has the codes).
ERROR_STATUSES: dict[int, str] = {
    400: "A body that cannot be parsed (not UTF-8), or speed, pitch or loudness_lufs while "
         "streaming",
    401: "No API key, or an unknown or revoked one (WWW-Authenticate: Bearer)",
    403: "The key is scoped to other endpoints or models, or its tenant is disabled",
    404: "No such resource (another tenant's is 404 too), or the model is not deployed",
    409: "A conflict: the name is taken, the job has no result yet, or the tenant keeps "
         "as many pronunciation dictionaries as it may",
    413: "The upload is larger than the limit (the decoded reference audio, the body, or a "
         "PLS file)",
    415: "Not multipart/form-data or application/json, or reference audio that cannot be read",
    422: "A field is invalid: `param` names it, the message lists what is allowed",
    429: "A tenant limit was reached: Retry-After and X-RateLimit-* say when to retry",
    500: "The server failed; the message names the request id, whose log lines hold the rest",
    503: "Overloaded, or the model has no running replica: Retry-After says when to retry",
    504: "Synthesis did not finish within the deployment's request_timeout_s",
}
SECURITY_SCHEMES = {
    "bearer": {"type": "http", "scheme": "bearer",
               "description": "An API key: `Authorization: Bearer <key>` (the openai SDK's api_key)"},
    "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key",
               "description": "The same API key in X-API-Key"},
}
KEY_REQUIRED: list[dict[str, list]] = [{"bearer": []}, {"apiKey": []}]
#: A public path that reads a key when one is sent (a wrong one is a 401).
KEY_OPTIONAL: list[dict[str, list]] = [{}, *KEY_REQUIRED]

#: One event of a stream_format "sse" answer (serve_app.routes.stream_responses): `data` is
#: JSON, speech.audio.delta (base64 audio), then speech.audio.done (usage) or error.
SSE_EVENT = {"type": "object", "required": ["data"], "properties": {
    "event": {"type": "string"},
    "data": {"type": "string", "contentMediaType": "application/json", "contentSchema": {
        "type": "object", "required": ["type"], "properties": {"type": {"enum": [
            "speech.audio.delta", "speech.audio.done", "error"]}}}},
}}
_ENVELOPE_REF = {"$ref": "#/components/schemas/ErrorEnvelope"}
_BINARY = {"type": "string", "format": "binary"}
_METHODS = ("get", "put", "post", "delete", "patch", "head", "options")


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The `responses=` of a route for the error statuses it answers itself."""
    return {status: {"description": ERROR_STATUSES[status], "model": ErrorEnvelope}
            for status in statuses}


def audio_content(description: str, *, sse: bool = False,
                  json_model: type[BaseModel] | None = None) -> dict[str, Any]:
    """A 200 whose body is audio in one of the output formats (FORMAT_INFO), optionally
    OpenAI's SSE events or a JSON answer instead."""
    content: dict[str, Any] = {}
    if json_model is not None:
        content["application/json"] = {
            "schema": {"$ref": f"#/components/schemas/{json_model.__name__}"}}
    content.update({info.content_type: {"schema": _BINARY} for info in FORMAT_INFO.values()})
    if sse:
        content["text/event-stream"] = {"schema": SSE_EVENT}
    return {"description": description, "content": content}


def upload_body(*fields: type[BaseModel], audio: str = "reference_audio",
                json_only: type[BaseModel] | None = None) -> dict[str, Any]:
    """`openapi_extra` of a route that reads its body itself (serve_app.routes.design_clone
    read_upload): `fields` plus the reference audio, as a file part (multipart/form-data) or
    as a base64 data URL (application/json); `json_only`: another JSON body it also takes."""
    def with_audio(audio_schema: dict) -> dict:
        variants = []
        for model in fields:
            schema = _inline(model.model_json_schema())
            schema["properties"][audio] = audio_schema
            schema["required"] = sorted({*schema.get("required", ()), audio})
            variants.append(schema)
        return variants[0] if len(variants) == 1 else {"anyOf": variants}

    data_url = {"type": "string", "pattern": "^data:audio/[A-Za-z0-9.+-]+;base64,",
                "description": "data:audio/...;base64,... (URLs and paths are never fetched)"}
    json_schema = with_audio(data_url)
    if json_only is not None:
        json_schema = {"anyOf": [json_schema, _inline(json_only.model_json_schema())]}
    return {"requestBody": {"required": True, "content": {
        "multipart/form-data": {"schema": with_audio({**_BINARY, "description": "The audio file"})},
        "application/json": {"schema": json_schema},
    }}}


def _inline(schema: dict) -> dict:
    """A model's JSON schema with its `$defs` references replaced by the definitions."""
    defs = schema.pop("$defs", {})

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref", "")
            if ref.startswith("#/$defs/"):
                return walk(copy.deepcopy(defs[ref.removeprefix("#/$defs/")]))
            return {k: walk(v) for k, v in node.items()}
        if isinstance(node, list):
            return [walk(v) for v in node]
        return node

    return walk(schema)


def length_limits(args: AppArgs) -> dict[str, dict[str, int]]:
    """Request model -> text field -> the most characters the service takes in it."""
    text, instruction = args.ingress.max_text_chars, args.ingress.max_instruction_chars
    return {
        "SpeechRequest": {"input": text, "instructions": instruction},
        "SeedSynthesizeRequest": {"text": text, "instruct": instruction},
        "DesignBody": {"input": text, "description": instruction},
        "CloneBody": {"input": text, "ref_text": text},
        "CloneVoice": {"ref_text": text},
        "DesignVoice": {"description": instruction},
        "JobBody": {"input": args.platform.jobs.max_text_chars, "instructions": instruction,
                    "description": instruction},
    }


def _limit_lengths(node: Any, limits: dict[str, dict[str, int]]) -> None:
    """Put each limit on its field, wherever the model's schema is (components, or inline in
    an upload's body)."""
    if isinstance(node, list):
        for item in node:
            _limit_lengths(item, limits)
        return
    if not isinstance(node, dict):
        return
    for field, limit in limits.get(node.get("title", ""), {}).items():
        prop = node.get("properties", {}).get(field)
        for schema in (prop.get("anyOf", [prop]) if prop else []):
            if schema.get("type") == "string":
                schema["maxLength"] = min(schema.get("maxLength", limit), limit)
    for value in node.values():
        _limit_lengths(value, limits)


def contract_openapi(app: FastAPI, models: list[str], args: AppArgs) -> dict[str, Any]:
    """The app's OpenAPI document, completed as the module docstring says (built once)."""
    if app.openapi_schema is not None:
        return app.openapi_schema
    spec = get_openapi(title=app.title, version=app.version, description=app.description,
                       routes=app.routes)
    components = spec.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    envelope = ErrorEnvelope.model_json_schema(ref_template="#/components/schemas/{model}")
    schemas.update(envelope.pop("$defs", {}))
    schemas["ErrorEnvelope"] = envelope
    for unused in ("HTTPValidationError", "ValidationError"):
        schemas.pop(unused, None)
    components["securitySchemes"] = SECURITY_SCHEMES
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            if method in _METHODS:
                _complete(path, operation)
    for name in ("SpeechRequest", "JobBody"):
        if name in schemas:
            schemas[name]["properties"]["model"]["enum"] = models
    _limit_lengths(spec, length_limits(args))
    app.openapi_schema = spec
    return spec


def _complete(path: str, operation: dict[str, Any]) -> None:
    responses = operation.setdefault("responses", {})
    statuses = {500}
    if not is_public(path):
        operation.setdefault("security", KEY_REQUIRED)
    if operation.get("security"):
        statuses |= {401} if operation["security"] == KEY_OPTIONAL else {401, 403}
    if "{" in path:
        statuses.add(404)
    if operation.get("parameters") or operation.get("requestBody"):
        statuses.add(422)
    if operation.get("requestBody"):
        statuses.add(400)  # FastAPI's "There was an error parsing the body" (not UTF-8)
    for status in statuses:
        responses.setdefault(str(status), {"description": ERROR_STATUSES[status]})
    for status, response in responses.items():
        if int(status) >= 400 and _is_error_answer(response):
            if response.get("description") in (None, "", "Validation Error"):
                response["description"] = ERROR_STATUSES[int(status)]
            response["content"] = {"application/json": {"schema": _ENVELOPE_REF}}


def _is_error_answer(response: dict[str, Any]) -> bool:
    """A response the error envelope answers: none declared yet, FastAPI's validation error,
    or the envelope (not a route's own body, e.g. /readyz's 503 report)."""
    schema = response.get("content", {}).get("application/json", {}).get("schema")
    return schema is None or schema.get("$ref", "").endswith(
        ("/HTTPValidationError", "/ErrorEnvelope"))
