"""Metering: a wrapper around each synthesis result and stream that admits it first and
records its usage once it ends.

    meter = Meter(admission, renew_every_s=...)
    out = await meter.result(Metered(model, request_id, characters=len(text)), synthesize)
    stream = await meter.stream(Metered(model, request_id, characters=lambda: n), open_stream)

A result: ok -> charged its characters and audio seconds, failed -> nothing. A stream
(`MeteredStream`): completed -> ok, a failure -> failed (nothing), the consumer gone ->
cancelled (charged what was sent); long streams renew their concurrency lease. `characters`
is an int, or a callable read when the usage is recorded (a stream whose text is known only
at its end). The usage is written in a task of its own, so a cancelled request is still
recorded. `Unmetered` has the same interface and records nothing (the service without a
platform, as in the Ray-free route tests).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from serve_app.edge.request_context import Caller
from serve_app.platform.limits import Admission
from serve_app.protocol.speech import AudioOutput, AudioStreamChunk
from serve_app.synthesis.admission import TenantAdmission
from serve_app.synthesis.audio_stream import AudioStream

T = TypeVar("T")
Characters = int | Callable[[], int]


@dataclass(frozen=True)
class Metered:
    """One metered call: the model it is billed to, its usage id, its characters (an int, or
    a callable read at settle time), the saved voice it used, and who it is for (None: the
    current caller). `failure_id` is the usage id of a failed attempt when a retry must be
    able to bill `request_id` later (job segments)."""

    model: str
    request_id: str
    characters: Characters = 0
    voice: str | None = None
    caller: Caller | None = None
    failure_id: str | None = None

    @property
    def reserved(self) -> int:
        """Characters held against the quota at admission (unknown ones: none)."""
        return self.characters if isinstance(self.characters, int) else 0

    def count(self) -> int:
        return self.characters() if callable(self.characters) else self.characters

    def usage_id(self, status: str) -> str:
        return self.failure_id if status == "failed" and self.failure_id else self.request_id


class Meter:
    def __init__(self, admission: TenantAdmission, renew_every_s: float):
        self.admission = admission
        self._renew_every_s = renew_every_s
        self._background: set[asyncio.Task] = set()

    async def run(self, m: Metered, call: Callable[[], Awaitable[T]],
                  audio_seconds: Callable[[T], float] = lambda _: 0.0) -> T:
        """Admit, await `call()`, record ok (its characters and `audio_seconds(result)`) or
        failed."""
        caller = m.caller or await self.admission.caller()
        admission = await self.admission.admit(caller, m.model, m.reserved)
        started = time.perf_counter()
        status, seconds = "failed", 0.0
        try:
            result = await call()
            status, seconds = "ok", audio_seconds(result)
            return result
        finally:
            self._detach(self.admission.settle(
                admission, caller, request_id=m.usage_id(status), model=m.model,
                status=status, started=started, characters=m.count() if status == "ok" else 0,
                audio_seconds=seconds, voice=m.voice))

    async def result(self, m: Metered, call: Callable[[], Awaitable[AudioOutput]]) -> AudioOutput:
        return await self.run(m, call, lambda out: out.duration_seconds)

    async def stream(self, m: Metered, open_stream: Callable[[], Awaitable[AudioStream]]
                     ) -> MeteredStream:
        """Admit, open the stream (its first audio is there), and meter it until it ends."""
        caller = m.caller or await self.admission.caller()
        admission = await self.admission.admit(caller, m.model, m.reserved)
        started = time.perf_counter()

        def settle(status: str, seconds: float) -> None:
            self._detach(self.admission.settle(
                admission, caller, request_id=m.usage_id(status), model=m.model,
                status=status, started=started, characters=m.count() if seconds else 0,
                audio_seconds=seconds, streamed=True, voice=m.voice))

        try:
            opened = await open_stream()
        except BaseException:
            settle("failed", 0.0)
            raise
        return MeteredStream(opened, admission, settle, self._detach, self._renew_every_s)

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

    async def run(self, m: Metered, call: Callable[[], Awaitable[T]],
                  audio_seconds: Callable[[T], float] = lambda _: 0.0) -> T:
        return await call()

    async def result(self, m: Metered, call: Callable[[], Awaitable[AudioOutput]]) -> AudioOutput:
        return await call()

    async def stream(self, m: Metered, open_stream: Callable[[], Awaitable[AudioStream]]
                     ) -> AudioStream:
        return await open_stream()


class MeteredStream:
    """An AudioStream whose end settles its admission and records its usage, once."""

    def __init__(self, inner: AudioStream, admission: Admission,
                 settle: Callable[[str, float], None],
                 detach: Callable[[Awaitable[Any]], Any], renew_every_s: float):
        self._inner = inner
        self._admission = admission
        self._settle = settle
        self._detach = detach
        self._renew_every_s = renew_every_s
        self._ended = False

    def __getattr__(self, name: str) -> Any:  # request_id, format, sample_rate, ...
        return getattr(self._inner, name)

    def _end(self, status: str, seconds: float) -> None:
        if not self._ended:
            self._ended = True
            self._settle(status, seconds)

    async def chunks(self) -> AsyncIterator[AudioStreamChunk]:
        sent, status = 0.0, "cancelled"
        renewed = time.monotonic()
        try:
            async with contextlib.aclosing(self._inner.chunks()) as pieces:
                async for piece in pieces:
                    sent = piece.duration_seconds  # handed to the consumer: sent
                    if piece.final:
                        status = "ok"
                    yield piece
                    if time.monotonic() - renewed > self._renew_every_s:
                        renewed = time.monotonic()
                        self._detach(asyncio.to_thread(self._admission.renew))
        except Exception:
            status = "failed"
            raise
        finally:
            self._end(status, sent if status != "failed" else 0.0)

    async def aclose(self) -> None:
        self._end("failed", 0.0)
        await self._inner.aclose()
