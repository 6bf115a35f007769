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
    """A pydantic error raised while building a request: 422 naming the first bad field."""
    first = exc.errors()[0]
    param = ".".join(str(p) for p in first.get("loc", ()) if p not in ("body", "query")) or "body"
    return ApiError(422, "invalid_value", f"{param}: {first.get('msg', 'invalid value')}", param)


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
