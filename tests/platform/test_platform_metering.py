"""The metering wrapper (serve_app.synthesis.metering) over a real platform: a result is billed once
with what it produced, a failure is billed nothing, a stream is billed when it ends (its
characters may be known only then), a dropped stream is billed what was sent."""

from __future__ import annotations

import asyncio
import contextlib

import numpy as np
import pytest

from deployments.audio.formats import AudioFormat
from deployments.engine.types import AudioChunk
from serve_app.edge.request_context import acting_as
from serve_app.protocol.speech import AudioOutput
from serve_app.synthesis.admission import TenantAdmission
from serve_app.synthesis.audio_stream import ModelStream, open_model_stream
from serve_app.synthesis.metering import Meter, Metered


class FakeModelStream:
    """A model's stream of `pieces` chunks of 0.5 s each (what `handle.options(stream=True)`
    answers)."""

    def __init__(self, pieces: int):
        self._chunks = [AudioChunk(audio=np.zeros(12_000, np.float32), sample_rate=24_000,
                                   index=i, frames=6, final=i == pieces - 1)
                        for i in range(pieces)]
        self.cancelled = False

    async def __anext__(self) -> AudioChunk:
        if not self._chunks:
            raise StopAsyncIteration
        return self._chunks.pop(0)

    def cancel(self) -> None:
        self.cancelled = True


async def metered_stream(meter: Meter, m: Metered, pieces: int) -> ModelStream:
    """A model stream opened as the service opens one: admitted and metered until it ends."""
    release = contextlib.AsyncExitStack()
    usage = await release.enter_async_context(meter.admitted(m))
    return await open_model_stream(FakeModelStream(pieces), m.request_id, 0.0, 30.0, release,
                                   usage)


async def metered_result(meter: Meter, m: Metered, call) -> AudioOutput:
    """A result made as the service makes one: admitted, then billed what it produced."""
    async with meter.admitted(m) as usage:
        out = await call()
        usage.ok(out.duration_seconds)
        return out


def output(seconds: float) -> AudioOutput:
    return AudioOutput(audio=b"", format=AudioFormat.WAV, content_type="audio/wav",
                       sample_rate=24000, duration_seconds=seconds, processing_seconds=0.0,
                       request_id="r")


@pytest.fixture
def tenant(platform):
    platform.tenants.create("acme")
    return platform.keys.verify(platform.keys.create("acme").secret)


def rows(platform, tenant_id: str) -> dict:
    summary = platform.usage.summary(tenant_id)
    return {"requests": summary.requests, "characters": summary.characters,
            "audio_seconds": summary.audio_seconds, "by_status": summary.by_status}


def run_as(platform, tenant, use_meter):
    """`use_meter(meter)` as the tenant's request; returns once its usage is written."""
    async def main():
        meter = Meter(TenantAdmission(platform), renew_every_s=60)
        try:
            with acting_as(tenant, "speech"):
                return await use_meter(meter)
        finally:
            await meter.settled()  # the usage writes, detached from the call

    return asyncio.run(main())


def test_a_result_is_billed_once_with_its_characters_and_audio(platform, tenant):
    async def call():
        return output(1.5)

    run_as(platform, tenant,
           lambda meter: metered_result(meter, Metered("CustomVoice", "req-1", 11), call))
    assert rows(platform, tenant.tenant_id) == {"requests": 1, "characters": 11,
                                                "audio_seconds": 1.5, "by_status": {"ok": 1}}


def test_a_failed_result_is_recorded_and_billed_nothing(platform, tenant):
    async def call():
        raise RuntimeError("model down")

    with pytest.raises(RuntimeError):
        run_as(platform, tenant,
               lambda meter: metered_result(meter, Metered("CustomVoice", "req-2", 11), call))
    assert rows(platform, tenant.tenant_id) == {"requests": 1, "characters": 0,
                                                "audio_seconds": 0.0, "by_status": {"failed": 1}}


def test_a_streams_characters_can_be_counted_when_it_ends(platform, tenant):
    text = []

    async def consume(meter):
        stream = await metered_stream(
            meter, Metered("CustomVoice", "req-3", lambda: len("".join(text)), streamed=True), 3)
        async for _ in stream.chunks():
            text.append("more ")  # the text keeps arriving while the stream plays

    run_as(platform, tenant, consume)
    assert rows(platform, tenant.tenant_id) == {"requests": 1, "characters": 15,
                                                "audio_seconds": 1.5, "by_status": {"ok": 1}}


def test_a_stream_the_consumer_drops_is_billed_what_was_sent(platform, tenant):
    async def consume(meter):
        stream = await metered_stream(meter, Metered("CustomVoice", "req-4", 20, streamed=True),
                                      4)
        async with contextlib.aclosing(stream.chunks()) as chunks:
            async for chunk in chunks:
                if chunk.index == 1:
                    break  # the client went away after two chunks

    run_as(platform, tenant, consume)
    assert rows(platform, tenant.tenant_id) == {"requests": 1, "characters": 20,
                                                "audio_seconds": 1.0,
                                                "by_status": {"cancelled": 1}}
