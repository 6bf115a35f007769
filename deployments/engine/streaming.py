"""Streaming synthesis, as the caller sees it: `SynthesisStream` (blocking iteration) and
`AsyncSynthesisStream` (asyncio) over a `StreamRunner`, the one thing both backends provide
for a streaming request (`step_loop.LoopStreamRunner` for the batched backend,
`reference.ReferenceStreamRunner` for the reference backend). A runner is started with a
`Sink` and hands it `AudioChunk`s in order, ending with a final chunk or an exception.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import queue
from collections.abc import AsyncIterator, Iterator
from typing import Protocol

import numpy as np

from deployments.engine.request import Sink
from deployments.engine.types import AudioChunk


class StreamRunner(Protocol):
    """What a backend gives for one streaming request."""

    sample_rate: int

    @property
    def frames(self) -> int: ...

    def start(self, sink: Sink) -> None: ...

    def cancel(self) -> None: ...

    def join(self, timeout: float | None = None) -> bool: ...


class SynthesisStream(Iterator[AudioChunk]):
    """Blocking iteration over a streaming synthesis (tests, benchmarks, plain Python).

    Ends after the chunk with `final=True`; raises the engine's error if generation failed.
    `close()` (or leaving a `with` block, or dropping out of a for loop and calling close)
    cancels the generation and waits for its thread.
    """

    def __init__(self, runner: StreamRunner) -> None:
        self._runner = runner
        self._queue: queue.Queue[AudioChunk | BaseException] = queue.Queue()
        self._done = False
        runner.start(self._queue.put)

    @property
    def frames(self) -> int:
        return self._runner.frames

    def __next__(self) -> AudioChunk:
        if self._done:
            raise StopIteration
        item = self._queue.get()
        if isinstance(item, BaseException):
            self._done = True
            raise item
        self._done = item.final
        return item

    def close(self, timeout: float | None = 30.0) -> None:
        self._runner.cancel()
        self._done = True
        self._runner.join(timeout)

    def __enter__(self) -> SynthesisStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncSynthesisStream(AsyncIterator[AudioChunk]):
    """Asyncio iteration: the generation thread hands chunks to the event loop, so waiting
    for the next chunk blocks no thread. `aclose()` (or cancellation of the consuming task
    followed by `aclose`) stops the generation at the next frame without waiting for it."""

    def __init__(self, runner: StreamRunner) -> None:
        self._runner = runner
        self._loop = asyncio.get_running_loop()
        self._queue: asyncio.Queue[AudioChunk | BaseException] = asyncio.Queue()
        self._done = False
        runner.start(self._from_thread)

    @property
    def frames(self) -> int:
        return self._runner.frames

    def _from_thread(self, item: AudioChunk | BaseException) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is gone: nobody is listening
            self._loop.call_soon_threadsafe(self._queue.put_nowait, item)

    async def __anext__(self) -> AudioChunk:
        if self._done:
            raise StopAsyncIteration
        item = await self._queue.get()
        if isinstance(item, BaseException):
            self._done = True
            raise item
        self._done = item.final
        return item

    async def coalesced(self) -> AsyncIterator[AudioChunk]:
        """The same audio, with the chunks that are already waiting when the consumer asks
        for the next one merged into one (`merge_chunks`; the first chunk always alone).
        A consumer that keeps up gets every chunk as made; one that falls behind (an event
        loop shared with other streams, a Ray hop per item) gets fewer, larger items
        instead of a growing queue of small ones, each of which would cost it a hop, an
        encode and a write again. An error after waiting chunks is raised after them."""
        pending: BaseException | None = None
        async for chunk in self:
            if chunk.index == 0 or chunk.final:
                yield chunk
                continue
            parts = [chunk]
            while not parts[-1].final and not self._queue.empty():
                item = self._queue.get_nowait()
                if isinstance(item, BaseException):
                    self._done, pending = True, item
                    break
                self._done = item.final
                parts.append(item)
            yield merge_chunks(parts)
            if pending is not None:
                raise pending

    def cancel(self) -> None:
        self._done = True
        self._runner.cancel()

    async def aclose(self) -> None:
        self.cancel()


def merge_chunks(parts: list[AudioChunk]) -> AudioChunk:
    """Consecutive chunks of one stream as one: their audio in order, the first's index, the
    frames summed, and the last one's running totals (final, finish reason, frames so far,
    text read, time)."""
    if len(parts) == 1:
        return parts[0]
    last = parts[-1]
    return dataclasses.replace(
        last, audio=np.concatenate([p.audio for p in parts]), index=parts[0].index,
        frames=sum(p.frames for p in parts))
