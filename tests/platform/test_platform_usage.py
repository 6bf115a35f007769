"""Usage metering: exactly one record per request, under concurrency too; summaries by
period and tenant."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest

from serve_app.platform.errors import InvalidRequest
from serve_app.platform.usage import UsageRecord, period_bounds


def test_concurrent_requests_give_exactly_one_record_each_and_sums_match(platform):
    tenant = platform.tenants.create("acme")
    principal = platform.keys.verify(platform.keys.create("acme").secret)
    n = 40

    async def one(i: int) -> tuple[int, float]:
        admission = await platform.admit(principal, model="CustomVoice", endpoint="speech",
                                         characters=10 + i)
        recorded = await platform.finish(
            admission, principal, request_id=f"req-{i}", model="CustomVoice", endpoint="speech",
            status="ok", characters=10 + i, audio_seconds=0.5 + i / 100, processing_ms=i)
        # the ingress retrying the same request id after a lost reply: not counted again
        again = await platform.finish(
            admission, principal, request_id=f"req-{i}", model="CustomVoice", endpoint="speech",
            status="ok", characters=10 + i, audio_seconds=0.5 + i / 100, processing_ms=i)
        assert recorded and not again
        return 10 + i, 0.5 + i / 100

    async def main():
        return await asyncio.gather(*(one(i) for i in range(n)))

    responses = asyncio.run(main())
    summary = platform.usage.summary(tenant.id, "month")
    assert summary.requests == n and summary.by_status == {"ok": n}
    assert summary.characters == sum(c for c, _ in responses)
    assert summary.audio_seconds == pytest.approx(sum(a for _, a in responses))
    assert summary.by_model["CustomVoice"]["requests"] == n


def test_a_failed_request_is_recorded_but_not_billed(platform):
    tenant = platform.tenants.create("acme")
    principal = platform.keys.verify(platform.keys.create("acme").secret)

    async def main():
        admission = await platform.admit(principal, model="VoiceDesign", endpoint="design",
                                         characters=99)
        await platform.finish(admission, principal, request_id="r-fail", model="VoiceDesign",
                              endpoint="design", status="failed", characters=99,
                              audio_seconds=4.0)

    asyncio.run(main())
    summary = platform.usage.summary(tenant.id)
    assert summary.by_status == {"failed": 1}
    assert (summary.characters, summary.audio_seconds) == (0, 0.0)


def test_summaries_are_per_tenant_and_per_period(platform):
    a, b = platform.tenants.create("a"), platform.tenants.create("b")
    rows = [
        (a.id, "r1", datetime(2025, 1, 31, 23, 59, tzinfo=UTC), 10),
        (a.id, "r2", datetime(2025, 2, 1, 0, 0, tzinfo=UTC), 20),
        (a.id, "r3", datetime(2025, 2, 14, 12, 0, tzinfo=UTC), 40),
        (b.id, "r4", datetime(2025, 2, 14, 12, 0, tzinfo=UTC), 80),
    ]
    for tenant_id, request_id, at, chars in rows:
        platform.usage.record(UsageRecord(
            request_id=request_id, tenant_id=tenant_id, model="CustomVoice", endpoint="speech",
            characters=chars, audio_seconds=1.0, created_at=at))
    assert platform.usage.summary(a.id, "2025-01").characters == 10
    assert platform.usage.summary(a.id, "2025-02").characters == 60
    assert platform.usage.summary(a.id, "2025-02-14").characters == 40
    assert platform.usage.summary(b.id, "2025-02").characters == 80
    now = datetime(2025, 2, 14, 18, 0, tzinfo=UTC)
    assert platform.usage.summary(a.id, "day", now=now).requests == 1
    assert platform.usage.summary(a.id, "month", now=now).requests == 2


def test_a_bad_period_names_the_accepted_forms():
    with pytest.raises(InvalidRequest, match="YYYY-MM"):
        period_bounds("last-week")
