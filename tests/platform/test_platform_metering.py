"""The metering wrapper (serve_app.synthesis.metering) over a real platform: a result is billed once
with what it produced, a failure is billed nothing, a stream is billed when it ends (its
characters may be known only then), a dropped stream is billed what was sent."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from deployments.audio.formats import AudioFormat
from serve_app.edge.request_context import acting_as
from serve_app.protocol.speech import AudioOutput, AudioStreamChunk
from serve_app.synthesis.admission import TenantAdmission
from serve_app.synthesis.metering import Meter, Metered


class FakeStream:
    """An opened AudioStream of `pieces` chunks of 0.5 s each."""

    def __init__(self, pieces: int):
        self.pieces = pieces
        self.request_id = "r"
        self.closed = False

    async def chunks(self) -> AsyncIterator[AudioStreamChunk]:
        for i in range(self.pieces):
            yield AudioStreamChunk(audio=b"\0\0", index=i, format=AudioFormat.PCM,
                                   content_type="audio/pcm", sample_rate=24000,
                                   duration_seconds=0.5 * (i + 1), elapsed_seconds=0.0,
                                   request_id=self.request_id, final=i == self.pieces - 1)

    async def aclose(self) -> None:
        self.closed = True


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

    run_as(platform, tenant, lambda meter: meter.result(Metered("CustomVoice", "req-1", 11), call))
    assert rows(platform, tenant.tenant_id) == {"requests": 1, "characters": 11,
                                                "audio_seconds": 1.5, "by_status": {"ok": 1}}


def test_a_failed_result_is_recorded_and_billed_nothing(platform, tenant):
    async def call():
        raise RuntimeError("model down")

    with pytest.raises(RuntimeError):
        run_as(platform, tenant, lambda meter: meter.result(Metered("CustomVoice", "req-2", 11), call))
    assert rows(platform, tenant.tenant_id) == {"requests": 1, "characters": 0,
                                                "audio_seconds": 0.0, "by_status": {"failed": 1}}


def test_a_streams_characters_can_be_counted_when_it_ends(platform, tenant):
    text = []

    async def consume(meter):
        stream = await meter.stream(Metered("CustomVoice", "req-3", lambda: len("".join(text))),
                                    lambda: _opened(3))
        async for _ in stream.chunks():
            text.append("more ")  # the text keeps arriving while the stream plays

    run_as(platform, tenant, consume)
    assert rows(platform, tenant.tenant_id) == {"requests": 1, "characters": 15,
                                                "audio_seconds": 1.5, "by_status": {"ok": 1}}


def test_a_stream_the_consumer_drops_is_billed_what_was_sent(platform, tenant):
    async def consume(meter):
        stream = await meter.stream(Metered("CustomVoice", "req-4", 20), lambda: _opened(4))
        async for piece in stream.chunks():
            if piece.index == 1:
                break  # the client went away after two chunks

    run_as(platform, tenant, consume)
    assert rows(platform, tenant.tenant_id) == {"requests": 1, "characters": 20,
                                                "audio_seconds": 1.0,
                                                "by_status": {"cancelled": 1}}


async def _opened(pieces: int) -> FakeStream:
    return FakeStream(pieces)
