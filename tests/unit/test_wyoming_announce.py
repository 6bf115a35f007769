"""The optional zeroconf announcement of the Wyoming server (serve_app.wyoming.announce):
registered as `_wyoming._tcp` at the server's port, withdrawn on close, and never a reason
for the replica to fail."""

from __future__ import annotations

import asyncio

from serve_app.wyoming import announce
from serve_app.wyoming.announce import SERVICE_TYPE, Announcement
from serve_app.wyoming.wyoming_args import WyomingArgs


def test_the_server_is_announced_as_wyoming_tcp_at_its_port():
    async def scenario():
        made = await Announcement.start(WyomingArgs(host="127.0.0.1", port=10299, zeroconf=True))
        assert made is not None
        info = made._info
        try:
            return info.type, info.port, info.parsed_addresses()
        finally:
            await made.close()

    kind, port, addresses = asyncio.run(scenario())
    assert (kind, port, addresses) == (SERVICE_TYPE, 10299, ["127.0.0.1"])


def test_a_node_without_mdns_serves_unannounced(monkeypatch):
    def no_multicast():
        raise OSError("no multicast here")

    monkeypatch.setattr(announce, "AsyncZeroconf", no_multicast)
    made = asyncio.run(Announcement.start(WyomingArgs(host="127.0.0.1", zeroconf=True)))
    assert made is None
