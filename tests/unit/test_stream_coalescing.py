"""A model replica forwards an engine stream through Ray one item per chunk; when its event
loop falls behind, the chunks already waiting go as one item (the same audio, in order)."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from deployments.engine.streaming import AsyncSynthesisStream, merge_chunks
from deployments.engine.types import AudioChunk, EngineError, FinishReason

SR, SPF = 24000, 1920


class _Runner:
    sample_rate = SR
    frames = 0

    def start(self, sink) -> None:
        self.sink = sink

    def cancel(self) -> None:
        self.cancelled = True

    def join(self, timeout=None) -> bool:
        return True


def _chunk(i: int, frames: int, final: bool = False) -> AudioChunk:
    audio = np.full(frames * SPF, i, dtype=np.float32)
    return AudioChunk(audio=audio, sample_rate=SR, index=i, frames=frames, final=final,
                      total_frames=i * 10 + frames, text_chars=i,
                      finish_reason=FinishReason.LENGTH if final else None)


async def _settle() -> None:
    for _ in range(5):  # the sink's call_soon_threadsafe callbacks run
        await asyncio.sleep(0)


def _open() -> tuple[AsyncSynthesisStream, _Runner]:
    runner = _Runner()
    return AsyncSynthesisStream(runner), runner


def test_chunks_already_waiting_leave_as_one_with_the_same_audio_in_order():
    async def main():
        stream, runner = _open()
        chunks = [_chunk(0, 1), _chunk(1, 6), _chunk(2, 6), _chunk(3, 2, final=True)]
        for c in chunks:
            runner.sink(c)
        await _settle()
        return [c async for c in stream.coalesced()], chunks

    got, sent = asyncio.run(main())
    assert [c.index for c in got] == [0, 1]  # the first alone, the rest (final too) merged
    assert got[1].final and got[1].frames == 14 and got[1].finish_reason is FinishReason.LENGTH
    assert got[1].total_frames == sent[-1].total_frames and got[1].text_chars == 3
    assert np.array_equal(np.concatenate([c.audio for c in got]),
                          np.concatenate([c.audio for c in sent]))


def test_a_consumer_that_keeps_up_gets_every_chunk_as_made():
    async def main():
        stream, runner = _open()
        got = []
        items = stream.coalesced()
        for i, frames in enumerate([1, 6, 6]):
            runner.sink(_chunk(i, frames))
            await _settle()
            got.append(await anext(items))
        runner.sink(_chunk(3, 0, final=True))
        await _settle()
        got.append(await anext(items))
        return got

    assert [(c.index, c.frames, c.final) for c in asyncio.run(main())] == [
        (0, 1, False), (1, 6, False), (2, 6, False), (3, 0, True)]


def test_an_error_after_waiting_chunks_comes_after_their_audio():
    async def main():
        stream, runner = _open()
        runner.sink(_chunk(0, 1))
        runner.sink(_chunk(1, 6))
        runner.sink(_chunk(2, 6))
        runner.sink(EngineError("codec decode failed"))
        await _settle()
        got = []
        with pytest.raises(EngineError, match="codec decode failed"):
            async for c in stream.coalesced():
                got.append(c)
        return got

    got = asyncio.run(main())
    assert [(c.index, c.frames) for c in got] == [(0, 1), (1, 12)]


def test_merging_one_chunk_is_that_chunk():
    c = _chunk(4, 6)
    assert merge_chunks([c]) is c
