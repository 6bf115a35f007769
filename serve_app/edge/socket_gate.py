"""Who may hold a WebSocket on this ingress replica, and for how long before it says who it is.

Every open socket holds one of the replica's Serve slots (`max_ongoing_requests`) for as long
as it lives, so sockets that send nothing could otherwise fill the replica and starve health
checks and every tenant's requests (issue 16). The gate keeps them within budgets that leave
room for the rest:

- a socket not yet authenticated is "pending": at most `ingress.max_pending_sockets` on the
  replica and `ingress.max_pending_sockets_per_client` from one client address, refused at
  the handshake beyond that; it must send its first message within
  `ingress.session_start_timeout_s` or it is closed (1008);
- an authenticated session counts against its tenant: at most the tenant's `max_concurrent`
  (its plan's concurrency), or `ingress.max_sessions_per_tenant` when the tenant has no such
  limit, and at most `ingress.max_sessions` on the replica.

The counts are this replica's (each ingress replica has its own slots to protect).
`IngressArgs.socket_budget` is what the gate lets hold slots; a config test keeps it below
the ingress's `max_ongoing_requests`.
"""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Iterator

from serve_app.app.args import IngressArgs
from serve_app.edge.api_errors import ApiError, overloaded


class SocketGate:
    def __init__(self, args: IngressArgs):
        self._args = args
        self._pending: Counter[str] = Counter()  # client address -> sockets not authenticated
        self._sessions: Counter[str] = Counter()  # tenant id -> open sessions

    @property
    def pending(self) -> int:
        return sum(self._pending.values())

    @property
    def sessions(self) -> int:
        return sum(self._sessions.values())

    @contextlib.contextmanager
    def pending_socket(self, client: str | None) -> Iterator[None]:
        """Hold a pending place for a socket from `client` until it is authenticated (or
        gone); refused (ApiError, before the handshake is accepted) beyond the caps."""
        args, who = self._args, client or "unknown"
        if self.pending >= args.max_pending_sockets:
            raise overloaded(f"{self.pending} connections are waiting to authenticate "
                             "(ingress.max_pending_sockets); retry later.", args.retry_after_s)
        if self._pending[who] >= args.max_pending_sockets_per_client:
            raise ApiError(429, "too_many_connections",
                           f"{self._pending[who]} connections from this address are waiting to "
                           "authenticate (ingress.max_pending_sockets_per_client); send the "
                           "session message on the ones open, or retry later.", None,
                           {"Retry-After": str(args.retry_after_s)})
        self._pending[who] += 1
        try:
            yield
        finally:
            self._release(self._pending, who)

    @contextlib.contextmanager
    def session(self, tenant_id: str, tenant_max_concurrent: int | None) -> Iterator[None]:
        """Hold a session place for the tenant while the session lives."""
        args = self._args
        limit = tenant_max_concurrent or args.max_sessions_per_tenant
        if self._sessions[tenant_id] >= limit:
            source = ("its max_concurrent limit" if tenant_max_concurrent
                      else "ingress.max_sessions_per_tenant")
            raise ApiError(429, "too_many_sessions",
                           f"this tenant has {self._sessions[tenant_id]} speech sessions open "
                           f"on this server, its limit ({source}) is {limit}; close one or "
                           "retry later.", None, {"Retry-After": str(args.retry_after_s)})
        if self.sessions >= args.max_sessions:
            raise overloaded(f"{self.sessions} speech sessions are open (ingress.max_sessions); "
                             "retry later.", args.retry_after_s)
        self._sessions[tenant_id] += 1
        try:
            yield
        finally:
            self._release(self._sessions, tenant_id)

    @staticmethod
    def _release(counts: Counter[str], key: str) -> None:
        counts[key] -= 1
        if counts[key] <= 0:
            del counts[key]
