"""The Wyoming TCP listener of one ingress replica: an asyncio server on the replica's event
loop, so each connection's work goes through that replica's service, admission and metering.

A peer outside `platform.trusted_networks` (the TCP peer's own address) is closed at
connect, before anything is read or looked up. A trusted peer beyond
`wyoming.max_connections` (this replica) or `wyoming.max_connections_per_peer` gets one
error event (`too_many_connections`) and is closed. The replicas of one node share the port
(SO_REUSEPORT; the kernel spreads connections over them), as Serve's own proxies do.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import Callable, Iterator

from wyoming.error import Error
from wyoming.event import async_write_event

from serve_app.wyoming.announce import Announcement
from serve_app.wyoming.connection import MAX_LINE_BYTES, WyomingConnection, WyomingServices
from serve_app.wyoming.wyoming_args import WyomingArgs

logger = logging.getLogger("qtts.wyoming")

TOO_MANY = "too_many_connections"


class ConnectionCaps:
    """Open connections of this replica, in all and per peer address."""

    def __init__(self, args: WyomingArgs) -> None:
        self._args = args
        self._open: Counter[str] = Counter()

    @property
    def open(self) -> int:
        return sum(self._open.values())

    def refusal(self, peer: str) -> str | None:
        """Why a connection from `peer` is refused now (None: it is not)."""
        args = self._args
        if self.open >= args.max_connections:
            return (f"{self.open} Wyoming connections are open on this server "
                    f"(wyoming.max_connections is {args.max_connections}); retry later")
        if self._open[peer] >= args.max_connections_per_peer:
            return (f"{self._open[peer]} Wyoming connections from this address are open "
                    f"(wyoming.max_connections_per_peer is {args.max_connections_per_peer}); "
                    "close one or retry later")
        return None

    @contextlib.contextmanager
    def holding(self, peer: str) -> Iterator[None]:
        self._open[peer] += 1
        try:
            yield
        finally:
            self._open[peer] -= 1
            if self._open[peer] <= 0:
                del self._open[peer]


class WyomingListener:
    def __init__(self, parts: WyomingServices, is_trusted: Callable[[str | None], bool]):
        self._parts = parts
        self._args = parts.args
        self._is_trusted = is_trusted
        self._caps = ConnectionCaps(parts.args)
        self._server: asyncio.Server | None = None
        self._announcement: Announcement | None = None

    async def start(self) -> None:
        args = self._args
        try:
            self._server = await asyncio.start_server(
                self._accept, args.host, args.port, reuse_port=True, limit=MAX_LINE_BYTES)
        except OSError as exc:
            raise RuntimeError(f"wyoming: cannot listen on {args.host}:{args.port} "
                               f"(wyoming.host, wyoming.port): {exc.strerror}") from None
        logger.info("wyoming: listening on %s, acting as tenant %r", args.address(), args.tenant)
        if not self._parts.platform.args.trusted_networks:
            logger.warning("wyoming: platform.trusted_networks is empty, so every Wyoming "
                           "connection is refused; set TRUSTED_NETWORKS to Home Assistant's "
                           "network")
        if args.zeroconf:
            self._announcement = await Announcement.start(args)

    @property
    def port(self) -> int:
        """The bound port (the configured one, or the one given for port 0)."""
        if self._server is None or not self._server.sockets:
            return self._args.port
        return self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        if self._announcement is not None:
            await self._announcement.close()
            self._announcement = None
        if self._server is not None:
            self._server.close()
            self._server = None

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peername = writer.get_extra_info("peername")
        peer = peername[0] if peername else None
        if not self._is_trusted(peer):
            logger.info("wyoming: closed a connection from %s (not in "
                        "platform.trusted_networks)", peer)
            writer.transport.abort()
            return
        assert peer is not None
        refusal = self._caps.refusal(peer)
        if refusal is not None:
            logger.info("wyoming: refused a connection from %s: %s", peer, TOO_MANY)
            with contextlib.suppress(Exception):
                await async_write_event(Error(text=refusal, code=TOO_MANY).event(), writer)
            writer.close()
            return
        with self._caps.holding(peer):
            await WyomingConnection(reader, writer, self._parts).run()
