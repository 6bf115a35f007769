"""Metering: every synthesis result and stream is admitted first and leaves one usage row
once it ends.

    async with meter.admitted(Metered(model, request_id, characters=len(text))) as usage:
        out = await synthesize()
        usage.ok(out.duration_seconds)

`admitted` checks the caller's scopes (403) and limits (429) on entry; the code inside tells
its `Usage` what it delivered, and the row is written on exit: ok -> charged its characters
and audio seconds; failed (an exception, or nothing said) -> nothing; a stream the consumer
left (`sent` without `ok`) -> cancelled, charged what was sent. A stream holds its admission
until it ends (serve_app.synthesis.audio_stream.ModelStream closes it), and `sent` renews
its concurrency lease while it plays. `characters` is an int, or a callable read when the
row is written (a stream whose text is known only at its end). The row is written in a task
of its own, so a cancelled request is still recorded. `Unmetered` has the same interface and
records nothing (the service without a platform, as in the Ray-free route tests).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from serve_app.edge.request_context import Caller
from serve_app.synthesis.admission import TenantAdmission

Characters = int | Callable[[], int]


@dataclass(frozen=True)
class Metered:
    """One metered call: the model it is billed to, its usage id, its characters (an int, or
    a callable read when its row is written), the saved voice it used, who it is for (None:
    the current caller) and whether it streams. `failure_id` is the usage id of a failed
    attempt when a retry must be able to bill `request_id` later (job segments)."""

    model: str
    request_id: str
    characters: Characters = 0
    voice: str | None = None
    caller: Caller | None = None
    failure_id: str | None = None
    streamed: bool = False

    @property
    def reserved(self) -> int:
        """Characters held against the quota at admission (unknown ones: none)."""
        return self.characters if isinstance(self.characters, int) else 0

    def count(self) -> int:
        return self.characters() if callable(self.characters) else self.characters

    def usage_id(self, status: str) -> str:
        return self.failure_id if status == "failed" and self.failure_id else self.request_id


class Usage:
    """What a metered call delivered, told by the code inside `Meter.admitted`."""

    def __init__(self, renew: Callable[[], Any] | None = None,
                 renew_every_s: float = math.inf) -> None:
        self.status = "failed"
        self.seconds = 0.0
        self._renew = renew
        self._renew_every_s = renew_every_s
        self._renewed = time.monotonic()

    def ok(self, seconds: float = 0.0) -> None:
        """It delivered all it was asked for: `seconds` of audio."""
        self.status, self.seconds = "ok", seconds

    def sent(self, seconds: float) -> None:
        """A stream handed `seconds` of audio to its consumer so far (billed if it is left
        there); a long stream renews its concurrency lease here."""
        if self.status != "ok":
            self.status, self.seconds = "cancelled", seconds
        if self._renew is not None and time.monotonic() - self._renewed > self._renew_every_s:
            self._renewed = time.monotonic()
            self._renew()

    def failed(self) -> None:
        self.status, self.seconds = "failed", 0.0

    def charged(self, streamed: bool) -> bool:
        """Whether its characters are billed: a result when it succeeded, a stream when it
        sent audio."""
        return self.seconds > 0 if streamed else self.status == "ok"


class Meter:
    def __init__(self, admission: TenantAdmission, renew_every_s: float):
        self.admission = admission
        self._renew_every_s = renew_every_s
        self._background: set[asyncio.Task] = set()

    @contextlib.asynccontextmanager
    async def admitted(self, m: Metered) -> AsyncIterator[Usage]:
        """Admit `m` (403, 429 raised here), then write its usage row when the block ends."""
        caller = m.caller or await self.admission.caller()
        admission = await self.admission.admit(caller, m.model, m.reserved)
        usage = Usage(lambda: self._detach(asyncio.to_thread(admission.renew)),
                      self._renew_every_s)
        started = time.perf_counter()
        try:
            yield usage
        except Exception:
            usage.failed()
            raise
        finally:
            charged = usage.charged(m.streamed)
            self._detach(self.admission.settle(
                admission, caller, request_id=m.usage_id(usage.status), model=m.model,
                status=usage.status, started=started,
                characters=m.count() if charged else 0,
                audio_seconds=usage.seconds if usage.status != "failed" else 0.0,
                streamed=m.streamed, voice=m.voice))

    async def settled(self) -> None:
        """Wait for the usage writes in flight (tests; a replica shutting down)."""
        while self._background:
            await asyncio.gather(*list(self._background), return_exceptions=True)

    def _detach(self, coro: Awaitable[Any]) -> asyncio.Task:
        task = asyncio.get_running_loop().create_task(coro)  # survives a cancelled request
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return task


class Unmetered:
    """The Meter's interface, recording nothing."""

    @contextlib.asynccontextmanager
    async def admitted(self, m: Metered) -> AsyncIterator[Usage]:
        yield Usage()
