"""The optional zeroconf (mDNS) announcement of the Wyoming server as `_wyoming._tcp`, the
service type Home Assistant discovers Wyoming servers by (`wyoming.zeroconf`).

Each replica announces itself under the node's host name; the second replica of a node
finds the name taken and leaves the first one's announcement (they share the port). A node
where mDNS cannot run logs the error and serves unannounced.
"""

from __future__ import annotations

import logging
import socket

from zeroconf import NonUniqueNameException
from zeroconf.asyncio import AsyncServiceInfo, AsyncZeroconf

from serve_app.wyoming.wyoming_args import WyomingArgs

logger = logging.getLogger("qtts.wyoming")

SERVICE_TYPE = "_wyoming._tcp.local."
MDNS_GROUP = "224.0.0.251"


def announced_address(host: str) -> str:
    """The IPv4 address to announce: the bound one, or for a wildcard bind the address of
    the interface that reaches the mDNS group."""
    if host not in ("", "0.0.0.0", "::"):
        return socket.gethostbyname(host)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.connect((MDNS_GROUP, 1))  # no packet is sent: this only picks the route
        return probe.getsockname()[0]


class Announcement:
    def __init__(self, zeroconf: AsyncZeroconf, info: AsyncServiceInfo | None) -> None:
        self._zeroconf = zeroconf
        self._info = info

    @classmethod
    async def start(cls, args: WyomingArgs) -> Announcement | None:
        try:
            address = announced_address(args.host)
        except OSError as exc:
            logger.error("wyoming: no address to announce over zeroconf: %s", exc.strerror)
            return None
        name = f"qwen3-tts-{socket.gethostname()}"
        info = AsyncServiceInfo(SERVICE_TYPE, f"{name}.{SERVICE_TYPE}",
                                addresses=[socket.inet_aton(address)], port=args.port)
        try:
            zeroconf = AsyncZeroconf()
        except OSError as exc:  # no multicast here (a container without it): serve unannounced
            logger.error("wyoming: cannot announce over zeroconf: %s", exc)
            return None
        try:
            await zeroconf.async_register_service(info)
        except NonUniqueNameException:
            logger.info("wyoming: %s is announced already (another replica of this node)", name)
            return cls(zeroconf, None)
        except Exception as exc:  # noqa: BLE001 - the announcement is optional; serve anyway
            logger.error("wyoming: zeroconf announcement failed: %s", exc)
            await zeroconf.async_close()
            return None
        logger.info("wyoming: announced %s at %s:%d over zeroconf", name, address, args.port)
        return cls(zeroconf, info)

    async def close(self) -> None:
        if self._info is not None:
            await self._zeroconf.async_unregister_service(self._info)
        await self._zeroconf.async_close()
