"""Webhooks: a signed POST when a job finishes, retried with exponential backoff.

Every delivery carries

    X-QTTS-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<raw body>")>
    X-QTTS-Event: job.succeeded | job.failed
    X-QTTS-Delivery: <uuid, the same on every retry of one delivery>

A receiver recomputes the HMAC over the raw body with its secret, compares in constant time,
and refuses timestamps older than a few minutes (replays): `verify_signature` does exactly
that. A 2xx answer ends the delivery; a network error, a timeout, 408, 429 or a 5xx is
retried after `backoff * 2**n` seconds (capped); any other status ends it as failed.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import ipaddress
import json
import logging
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from urllib.parse import urlparse

import httpx

from serve_app.platform.errors import InvalidRequest

logger = logging.getLogger("qtts.platform.webhooks")

SIGNATURE_HEADER = "X-QTTS-Signature"
EVENT_HEADER = "X-QTTS-Event"
DELIVERY_HEADER = "X-QTTS-Delivery"
RETRY_STATUSES = {408, 425, 429}


class SignatureError(ValueError):
    pass


def sign(secret: str, body: bytes, timestamp: int | None = None) -> str:
    t = int(time.time()) if timestamp is None else timestamp
    mac = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={t},v1={mac}"


def verify_signature(secret: str, body: bytes, header: str, *, tolerance_s: float = 300,
                     now: float | None = None) -> None:
    """Raise SignatureError unless `header` signs `body` with `secret` recently enough."""
    fields = dict(part.split("=", 1) for part in header.split(",") if "=" in part)
    try:
        t = int(fields["t"])
    except (KeyError, ValueError) as exc:
        raise SignatureError("no timestamp in the signature header") from exc
    expected = sign(secret, body, t).split("v1=", 1)[1]
    if not hmac.compare_digest(expected, fields.get("v1", "")):
        raise SignatureError("signature does not match")
    if abs((time.time() if now is None else now) - t) > tolerance_s:
        raise SignatureError("signature timestamp is outside the tolerance")


def check_webhook_url(url: str) -> str:
    parsed = urlparse(url)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise InvalidRequest("webhook_url must be an http(s) URL", param="webhook_url")
    if len(url) > 2000:
        raise InvalidRequest("webhook_url is too long", param="webhook_url")
    return url


def _private_host(host: str, port: int) -> bool:
    try:
        infos = socket.getaddrinfo(host, port, proto=socket.IPPROTO_TCP)
    except socket.gaierror:
        return False  # let the request fail (and be retried) with a clear error
    for info in infos:
        addr = ipaddress.ip_address(info[4][0])
        if addr.is_private or addr.is_loopback or addr.is_link_local or addr.is_reserved:
            return True
    return False


@dataclass(frozen=True)
class DeliveryResult:
    delivered: bool
    attempts: int
    status_code: int | None
    error: str | None


class WebhookSender:
    def __init__(self, *, timeout_s: float, max_attempts: int, backoff_s: float,
                 backoff_max_s: float, allow_private_hosts: bool = False,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep):
        self.timeout_s = timeout_s
        self.max_attempts = max_attempts
        self.backoff_s = backoff_s
        self.backoff_max_s = backoff_max_s
        self.allow_private_hosts = allow_private_hosts
        self._sleep = sleep

    def delay(self, attempt: int) -> float:
        """Wait before retry number `attempt` (1-based)."""
        return min(self.backoff_max_s, self.backoff_s * 2 ** (attempt - 1))

    async def deliver(self, url: str, secret: str, event: str, payload: dict, delivery_id: str,
                      *, done_attempts: int = 0,
                      on_attempt: Callable[[int, str | None], Awaitable[None]] | None = None,
                      ) -> DeliveryResult:
        body = json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()
        parsed = urlparse(url)
        if not self.allow_private_hosts and await asyncio.to_thread(
            _private_host, parsed.hostname or "", parsed.port or 443
        ):
            return DeliveryResult(False, done_attempts, None, "webhook host resolves to a private address")
        attempts, status, error = done_attempts, None, None
        async with httpx.AsyncClient(timeout=self.timeout_s, follow_redirects=False) as client:
            while attempts < self.max_attempts:
                if attempts > 0:
                    await self._sleep(self.delay(attempts))
                attempts += 1
                headers = {
                    "Content-Type": "application/json",
                    "User-Agent": "qtts-webhooks/1",
                    SIGNATURE_HEADER: sign(secret, body),
                    EVENT_HEADER: event,
                    DELIVERY_HEADER: delivery_id,
                }
                try:
                    response = await client.post(url, content=body, headers=headers)
                    status = response.status_code
                    error = None if 200 <= status < 300 else f"HTTP {status}"
                except httpx.HTTPError as exc:
                    status, error = None, type(exc).__name__
                if on_attempt is not None:
                    await on_attempt(attempts, error)
                if error is None:
                    return DeliveryResult(True, attempts, status, None)
                if status is not None and status < 500 and status not in RETRY_STATUSES:
                    break
                logger.info("webhook %s attempt %d failed: %s", delivery_id, attempts, error)
        return DeliveryResult(False, attempts, status, error)
