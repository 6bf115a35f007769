"""Who the current request acts as: its `Caller` (principal, endpoint family, the rate-limit
headers its answer carries), held in a context variable for the request's task.

The auth middleware (serve_app.edge.auth_middleware) sets it for HTTP; a WebSocket session, which
authenticates itself, runs its work inside `acting_as`. Code outside any request (the handle
API, the job runner) has no caller here and is given one by the admission component.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator
from dataclasses import dataclass, field

from serve_app.platform.keys import Principal


@dataclass
class Caller:
    """A principal calling an endpoint family, and the X-RateLimit-* headers for its answer."""

    principal: Principal
    endpoint: str
    headers: dict[str, str] = field(default_factory=dict)


_current: contextvars.ContextVar[Caller | None] = contextvars.ContextVar(
    "qtts_caller", default=None)


def current_caller() -> Caller | None:
    return _current.get()


@contextlib.contextmanager
def acting_as(principal: Principal, endpoint: str) -> Iterator[Caller]:
    """Run the block as `principal` calling `endpoint`."""
    caller = Caller(principal, endpoint)
    token = _current.set(caller)
    try:
        yield caller
    finally:
        _current.reset(token)
