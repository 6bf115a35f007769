"""One error vocabulary, mapped to HTTP once.

Every failure a client can see is an `ApiError` with a status, a machine-readable `code`, a
message that names the field and the allowed values, and the `param` it concerns. Library
exceptions (engine, audio, Ray, the platform's) are translated here and nowhere else. The JSON body is
`{"error": {"code", "message", "param", "request_id"}}`; the seed-compatible routes add the
seed's `success: false` and `message` so the existing Go worker reads failures as before.
"""

from __future__ import annotations

import asyncio
import logging

from pydantic import ValidationError
from ray.exceptions import RayActorError, RayTaskError
from ray.serve.exceptions import (
    BackPressureError,
    DeploymentUnavailableError,
    ReplicaUnavailableError,
)

from deployments.audio.errors import AudioInputError
from deployments.engine.types import EngineError, EngineOverloadedError, UnsupportedValueError
from serve_app.platform.errors import PlatformError

logger = logging.getLogger("qtts.errors")

_AUDIO_STATUS = {"too_large": 413, "unreadable": 415}


class ApiError(Exception):
    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        param: str | None = None,
        headers: dict[str, str] | None = None,
    ):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.param = param
        self.headers = headers or {}

    def __reduce__(self):  # cross Ray handles intact
        return (type(self), (self.status, self.code, self.message, self.param, self.headers))

    def body(self, request_id: str | None, path: str = "") -> dict:
        """The JSON answer: the error envelope (with OpenAI's `type`), plus the seed's
        `success: false` / `message` on the seed routes (/api/...), which the Go worker reads."""
        body: dict = {
            "error": {
                "code": self.code,
                "message": self.message,
                "param": self.param,
                "type": "invalid_request_error" if self.status < 500 else "server_error",
                "request_id": request_id,
            }
        }
        if path.startswith("/api/"):
            body.update(success=False, message=self.message)
        return body


def invalid(param: str, message: str, code: str = "invalid_value") -> ApiError:
    return ApiError(422, code, message, param)


def overloaded(message: str, retry_after_s: int) -> ApiError:
    return ApiError(503, "overloaded", message, None, {"Retry-After": str(retry_after_s)})


def unavailable(message: str, retry_after_s: int, param: str | None = None) -> ApiError:
    """A model deployment has no replica able to serve now (down, restarting, starting)."""
    return ApiError(503, "model_unavailable", message, param, {"Retry-After": str(retry_after_s)})


#: Ray's errors for a replica that died or cannot be reached: the request may succeed on a
#: replacement, so they are 503 + Retry-After, never a 500.
REPLICA_GONE = (RayActorError, ReplicaUnavailableError, DeploymentUnavailableError)


def replica_gone(exc: BaseException) -> bool:
    return _find(exc, REPLICA_GONE) is not None


def _find(exc: BaseException, kind: type | tuple[type, ...]) -> BaseException | None:
    """Ray wraps replica exceptions (RayTaskError subclasses the original type), and
    callers may chain them: find the first exception of `kind` in the chain, unwrapped.

    The wrapper's own str() is the remote traceback (process id, node address, file paths),
    so a wrapper is never returned when the original it wraps is there: messages taken from
    the result are safe to show a client."""
    seen = 0
    while exc is not None and seen < 8:
        cause = exc.__cause__ or getattr(exc, "cause", None)
        if isinstance(exc, kind) and not (isinstance(exc, RayTaskError) and isinstance(cause, kind)):
            return exc
        exc = cause
        seen += 1
    return None


def from_platform(exc: PlatformError) -> ApiError:
    """A platform failure (401, 403, 404, 429, ...) as the ApiError it already describes."""
    return ApiError(exc.status, exc.code, exc.message, exc.param, exc.headers)


def validation_error(exc: ValidationError) -> ApiError:
    """A pydantic error raised while building a request (the WebSocket's settings and
    messages, multipart forms, the handle API): 422 naming the first bad field."""
    return invalid_field(exc.errors()[0])


def invalid_field(error: dict) -> ApiError:
    """One pydantic (or FastAPI request-validation) error as the 422 every surface answers,
    its message one sentence a person reads: the field, what is wrong, what is allowed
    (`seed must be 0 or more`), never the framework's wording."""
    param = ".".join(str(p) for p in error.get("loc", ()) if p not in ("body", "query", "form"))
    return ApiError(422, "invalid_value", describe_invalid(param or "body", error), param or "body")


def describe_invalid(field: str, error: dict) -> str:
    kind, ctx = error.get("type", ""), error.get("ctx") or {}
    subject = "The request body" if field == "body" else field
    if kind == "missing":
        return f"{subject} is required."
    if kind == "extra_forbidden":
        return f"{field} is not a field of this request; check its spelling (see /docs)."
    if kind == "greater_than_equal":
        return f"{field} must be {ctx['ge']} or more."
    if kind == "greater_than":
        return f"{field} must be more than {ctx['gt']}."
    if kind == "less_than_equal":
        return f"{field} must be {ctx['le']} or less."
    if kind == "less_than":
        return f"{field} must be less than {ctx['lt']}."
    if kind == "string_too_short":
        if ctx.get("min_length") == 1:
            return f"{field} must not be empty."
        return f"{field} must be at least {ctx['min_length']} characters long."
    if kind == "string_too_long":
        return f"{field} must be at most {ctx['max_length']} characters long."
    if kind in ("too_short", "too_long"):
        bound = "at least" if kind == "too_short" else "at most"
        limit = ctx.get("min_length", ctx.get("max_length"))
        return f"{field} must have {bound} {limit} items."
    if kind in ("int_type", "int_parsing", "int_from_float"):
        return f"{field} must be a whole number written as a JSON integer (such as 7, not \"7\" or 7.0)."
    if kind in ("float_type", "float_parsing", "finite_number"):
        return f"{field} must be a number."
    if kind in ("bool_type", "bool_parsing"):
        return f"{field} must be true or false."
    if kind in ("string_type", "string_unicode"):
        return f"{field} must be a string."
    if kind in ("literal_error", "enum"):
        return f"{field} must be one of {ctx.get('expected', '')}."
    if kind in ("model_type", "dict_type", "model_attributes_type"):
        return f"{subject} must be a JSON object."
    if kind == "list_type":
        return f"{field} must be a list."
    if kind == "json_invalid":
        return f"The request body is not valid JSON ({ctx.get('error', 'unreadable')})."
    if kind == "value_error":  # a validator's own words ("must contain something to speak")
        reason = str(ctx.get("error", error.get("msg", ""))).removeprefix("Value error, ")
        return f"{field} {reason}".rstrip(".") + "."
    message = str(error.get("msg", "is not valid"))
    return f"{field} is not valid: {message[:1].lower()}{message[1:]}".rstrip(".") + "."


def to_api_error(exc: BaseException, *, retry_after_s: int, request_id: str) -> ApiError:
    """Translate any exception raised while serving a request into an ApiError."""
    if found := _find(exc, ApiError):
        return found  # type: ignore[return-value]
    if found := _find(exc, PlatformError):
        return from_platform(found)  # type: ignore[arg-type]
    if found := _find(exc, UnsupportedValueError):
        return ApiError(422, "unsupported_value", found.message, found.param)  # type: ignore[attr-defined]
    if found := _find(exc, AudioInputError):
        status = _AUDIO_STATUS.get(found.code, 422)  # type: ignore[attr-defined]
        return ApiError(status, f"audio_{found.code}", str(found.args[0]), found.param)  # type: ignore[attr-defined]
    if found := _find(exc, ValidationError):
        return validation_error(found)  # type: ignore[arg-type]
    if found := _find(exc, EngineOverloadedError):
        return overloaded(f"{found.message}; retry later.",  # type: ignore[attr-defined]
                          max(retry_after_s, found.retry_after_s))  # type: ignore[attr-defined]
    if _find(exc, BackPressureError):
        return overloaded("The model queue is full; retry later.", retry_after_s)
    if _find(exc, REPLICA_GONE):
        logger.warning("request %s: a replica became unavailable: %s", request_id,
                       type(exc).__name__)
        return unavailable("A model replica became unavailable while serving this request; "
                           "retry shortly.", retry_after_s)
    if isinstance(exc, asyncio.TimeoutError | TimeoutError):
        logger.error("request %s timed out", request_id)
        return ApiError(504, "timeout", f"Synthesis did not finish in time (request {request_id}).")
    kind = "model_error" if _find(exc, EngineError) else "internal_error"
    logger.error("request %s failed: %s", request_id, type(exc).__name__, exc_info=exc)
    return ApiError(500, kind, f"The server failed to synthesize this request (request {request_id}).")
