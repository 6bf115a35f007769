"""One error vocabulary, mapped to HTTP once.

Every failure a client can see is an `ApiError` with a status, a machine-readable `code`, a
message that names the field and the allowed values, and the `param` it concerns. Library
exceptions (engine, audio, Ray) are translated here and nowhere else. The JSON body is
`{"error": {"code", "message", "param", "request_id"}}`; the seed-compatible routes add the
seed's `success: false` and `message` so the existing Go worker reads failures as before.
"""

from __future__ import annotations

import asyncio
import logging

from ray.serve.exceptions import BackPressureError

from deployments.audio.errors import AudioInputError
from deployments.engine.types import EngineError, UnsupportedValueError

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

    def body(self, request_id: str | None) -> dict:
        return {
            "error": {
                "code": self.code,
                "message": self.message,
                "param": self.param,
                "request_id": request_id,
            }
        }


def invalid(param: str, message: str, code: str = "invalid_value") -> ApiError:
    return ApiError(422, code, message, param)


def overloaded(message: str, retry_after_s: int) -> ApiError:
    return ApiError(503, "overloaded", message, None, {"Retry-After": str(retry_after_s)})


def _find(exc: BaseException, kind: type) -> BaseException | None:
    """Ray wraps replica exceptions (RayTaskError subclasses the original type), and
    callers may chain them: find the first exception of `kind` in the chain."""
    seen = 0
    while exc is not None and seen < 8:
        if isinstance(exc, kind):
            return exc
        exc = exc.__cause__ or getattr(exc, "cause", None)
        seen += 1
    return None


def to_api_error(exc: BaseException, *, retry_after_s: int, request_id: str) -> ApiError:
    """Translate any exception raised while serving a request into an ApiError."""
    if found := _find(exc, ApiError):
        return found  # type: ignore[return-value]
    if found := _find(exc, UnsupportedValueError):
        return ApiError(422, "unsupported_value", str(found), found.param)  # type: ignore[attr-defined]
    if found := _find(exc, AudioInputError):
        status = _AUDIO_STATUS.get(found.code, 422)  # type: ignore[attr-defined]
        return ApiError(status, f"audio_{found.code}", str(found), found.param)  # type: ignore[attr-defined]
    if _find(exc, BackPressureError):
        return overloaded("The model queue is full; retry later.", retry_after_s)
    if isinstance(exc, asyncio.TimeoutError | TimeoutError):
        logger.error("request %s timed out", request_id)
        return ApiError(504, "timeout", f"Synthesis did not finish in time (request {request_id}).")
    kind = "model_error" if _find(exc, EngineError) else "internal_error"
    logger.error("request %s failed: %s", request_id, type(exc).__name__, exc_info=exc)
    return ApiError(500, kind, f"The server failed to synthesize this request (request {request_id}).")
