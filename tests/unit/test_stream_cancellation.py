"""A cancelled stream stops, even when the cancel lands as its next chunk arrives.

Python 3.11's `asyncio.wait_for` returns the awaited result and drops the cancellation when
both happen in the same loop iteration; a speech session's Stop then hung (the sender read
on past its cancel, then waited forever for text the stopped client would not send). The
ingress waits with `asyncio.timeout`, and ruff bans `asyncio.wait_for` (pyproject.toml).
"""

from __future__ import annotations

import asyncio
import contextlib

import numpy as np
import pytest

from deployments.engine.types import AudioChunk
from serve_app.synthesis.audio_stream import ModelStream, open_model_stream


def chunk(index: int, final: bool = False) -> AudioChunk:
    return AudioChunk(audio=np.zeros(1920, dtype=np.float32), sample_rate=24_000, index=index,
                      frames=1, final=final)


class HandDelivered:
    """A model stream whose chunks arrive when the test hands them over."""

    def __init__(self) -> None:
        self.pending: asyncio.Future | None = None
        self.cancelled = False

    async def __anext__(self) -> AudioChunk:
        self.pending = asyncio.get_running_loop().create_future()
        return await self.pending

    def cancel(self) -> None:
        self.cancelled = True


async def wait_until(condition, limit_s: float = 5.0) -> None:
    async with asyncio.timeout(limit_s):
        while not condition():
            await asyncio.sleep(0)


async def cancel_as_a_chunk_arrives(task: asyncio.Task, source: HandDelivered, index: int) -> None:
    """Deliver chunk `index` and cancel `task` in the same loop iteration."""
    await wait_until(lambda: source.pending is not None and not source.pending.done())
    source.pending.set_result(chunk(index))
    task.cancel()


def test_a_reader_cancelled_as_its_next_chunk_arrives_stops_and_releases():
    async def main():
        source = HandDelivered()
        released: list[bool] = []
        release = contextlib.AsyncExitStack()
        release.callback(lambda: released.append(True))
        stream = ModelStream(source, chunk(0), "rid", 0.0, 30.0, release)
        read: list[int] = []

        async def reader():
            async for piece in stream.chunks():
                read.append(piece.index)

        task = asyncio.get_running_loop().create_task(reader())
        await cancel_as_a_chunk_arrives(task, source, 1)
        with pytest.raises(asyncio.CancelledError):
            async with asyncio.timeout(5):
                await task
        assert task.cancelled()
        assert source.cancelled and released == [True]
        assert read in ([0], [0, 1])  # the chunk that raced the cancel may or may not be read

    asyncio.run(main())


def test_an_open_cancelled_as_the_first_chunk_arrives_stops():
    async def main():
        source = HandDelivered()
        task = asyncio.get_running_loop().create_task(open_model_stream(
            source, "rid", 0.0, 30.0, contextlib.AsyncExitStack()))
        await cancel_as_a_chunk_arrives(task, source, 0)
        with pytest.raises(asyncio.CancelledError):
            await task
        assert source.cancelled

    asyncio.run(main())


def test_ruff_bans_asyncio_wait_for_outside_the_tests():
    """The guard: ruff (run by .ci/run) bans it by TID251 everywhere but tests/."""
    import tomllib
    from pathlib import Path

    config = tomllib.loads((Path(__file__).resolve().parents[2] / "pyproject.toml").read_text())
    lint = config["tool"]["ruff"]["lint"]
    assert "TID251" in lint["select"]
    assert "asyncio.wait_for" in lint["flake8-tidy-imports"]["banned-api"]
