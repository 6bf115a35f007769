"""Logs of the graph: JSON lines that carry the request id, in every replica.

Ray Serve already does the hard part: the proxy takes the caller's `X-Request-ID` (or makes
one), echoes it on the response, and passes it with every handle call the request makes, so
each replica sees the same id in its request context. With `logging_config: {encoding: JSON}`
in the serve config, Serve's own logger writes JSON lines with `request_id`, `deployment`,
`replica` and `route` to /tmp/ray/session_latest/logs/serve/. Serve configures only the
`ray.serve` logger, though; `configure_replica_logging` routes the project's loggers (`qtts.*`
and the engine's `deployments.*`) through the same handlers, so their lines are JSON with the
request id too.

Serve's access log takes a response's status from its first message, so a stream that fails
after its headers would be logged as a `200` like a complete one: `mark_aborted` (called by the
ingress's HTTP edge) makes that line say `200 aborted`.

What may be logged at INFO: ids, model kinds, sizes, durations, error codes and types. Never
the text to synthesize, audio, reference transcripts, voice descriptions or secrets (a graph
test greps the replica logs for a request's text).
"""

from __future__ import annotations

import logging

from ray.serve.context import _get_serve_request_context

SERVE_LOGGER = "ray.serve"
PROJECT_LOGGERS = ("qtts", "deployments")


def configure_replica_logging(names: tuple[str, ...] = PROJECT_LOGGERS) -> None:
    """Send the project's loggers to this replica's Serve log handlers (call in __init__)."""
    serve_logger = logging.getLogger(SERVE_LOGGER)
    for name in names:
        logger = logging.getLogger(name)
        logger.handlers = list(serve_logger.handlers)
        logger.setLevel(serve_logger.level or logging.INFO)
        logger.propagate = False  # the root logger would print them again, without context


class AbortedResponses(logging.Filter):
    """On Serve's logger: the access-log line of a request marked aborted gets `aborted`
    after its status (`GET /v1/audio/speech 200 aborted 812.3ms`). Serve logs that line just
    after the request's handler raised; the few marks never logged (a call outside Serve)
    are dropped oldest first."""

    KEEP = 1024

    def __init__(self) -> None:
        super().__init__()
        self._marked: dict[str, None] = {}

    def mark(self, request_id: str) -> None:
        self._marked[request_id] = None
        while len(self._marked) > self.KEEP:
            self._marked.pop(next(iter(self._marked)))

    def filter(self, record: logging.LogRecord) -> bool:
        request_id = getattr(record, "request_id", None)
        if getattr(record, "serve_access_log", False) and request_id in self._marked:
            del self._marked[request_id]
            head, _, latency = str(record.msg).rpartition(" ")
            record.msg, record.args = f"{head} aborted {latency}", ()
        return True


def mark_aborted(request_id: str | None) -> None:
    """Mark the current request's access-log line: its response was cut short."""
    if not request_id:
        return
    serve_logger = logging.getLogger(SERVE_LOGGER)
    marker = next((f for f in serve_logger.filters if isinstance(f, AbortedResponses)), None)
    if marker is None:
        marker = AbortedResponses()
        serve_logger.addFilter(marker)
    marker.mark(request_id)


def current_request_id() -> str | None:
    """The id of the request this code runs for (same in every deployment it reaches)."""
    return _get_serve_request_context().request_id or None
