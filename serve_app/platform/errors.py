"""The platform's failures, carrying the HTTP status, code and headers the ingress sends.

Same fields as `serve_app.edge.api_errors.ApiError` (status, code, message, param, headers), so the
ingress maps one to the other without a table; this module imports nothing from Ray.
"""

from __future__ import annotations


class PlatformError(Exception):
    status = 400
    code = "platform_error"

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        headers: dict[str, str] | None = None,
        code: str | None = None,
    ):
        super().__init__(message)
        self.message = message
        self.param = param
        self.headers = dict(headers or {})
        if code is not None:
            self.code = code

    def __reduce__(self):  # survive pickling (e.g. across a Ray handle) with all fields
        return (_rebuild, (type(self), self.message, self.param, self.headers, self.code))


def _rebuild(cls, message, param, headers, code):
    return cls(message, param=param, headers=headers, code=code)


class AuthenticationError(PlatformError):
    """No key, an unknown key or a revoked key (401)."""

    status = 401
    code = "invalid_api_key"

    def __init__(self, message: str, **kwargs):
        kwargs.setdefault("headers", {"WWW-Authenticate": 'Bearer realm="qtts"'})
        super().__init__(message, **kwargs)


class PermissionDenied(PlatformError):
    """A valid key whose scopes or tenant do not allow this request (403)."""

    status = 403
    code = "permission_denied"


class NotFound(PlatformError):
    """Absent, or owned by another tenant: the two are indistinguishable on purpose (404)."""

    status = 404
    code = "not_found"


class Conflict(PlatformError):
    status = 409
    code = "conflict"


class InvalidRequest(PlatformError):
    status = 422
    code = "invalid_value"


class LimitExceeded(PlatformError):
    """A rate, concurrency or quota limit (429, with Retry-After and X-RateLimit-* headers)."""

    status = 429
    code = "rate_limited"


class JobNotReady(PlatformError):
    """The job has no result yet (409; the status says why)."""

    status = 409
    code = "job_not_ready"


class ConfigurationError(PlatformError):
    """The platform's settings cannot work (raised at start, never per request)."""

    status = 500
    code = "platform_misconfigured"
