"""Logs of the graph: JSON lines that carry the request id, in every replica.

Ray Serve already does the hard part: the proxy takes the caller's `X-Request-ID` (or makes
one), echoes it on the response, and passes it with every handle call the request makes, so
each replica sees the same id in its request context. With `logging_config: {encoding: JSON}`
in the serve config, Serve's own logger writes JSON lines with `request_id`, `deployment`,
`replica` and `route` to /tmp/ray/session_latest/logs/serve/. Serve configures only the
`ray.serve` logger, though; `configure_replica_logging` routes the project's loggers (`qtts.*`
and the engine's `deployments.*`) through the same handlers, so their lines are JSON with the
request id too.

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


def current_request_id() -> str | None:
    """The id of the request this code runs for (same in every deployment it reaches)."""
    return _get_serve_request_context().request_id or None
