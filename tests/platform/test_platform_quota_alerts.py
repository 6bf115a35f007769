"""Quota warnings, as a spec: the tenant's webhook is POSTed once at 80% and once at 100% of
each included quota per month, signed as the jobs' webhooks are, however many requests
cross the line at once. SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import time

from platform_testing import terms

from serve_app.platform.jobs.webhooks import verify_signature
from serve_app.platform.usage import UsageRecord

SECRET = "whsec_quota-test"


def on_plan(platform, receiver=None, **overrides):
    platform.tenants.create("acme")
    platform.plans.create("pro", terms(**overrides))
    platform.plans.assign("acme", "pro")
    if receiver is not None:
        platform.set_tenant_webhook("acme", receiver.url, SECRET)
    return platform.keys.verify(platform.keys.create("acme").secret)


async def use(platform, principal, request_id: str, characters: int) -> None:
    admission = await platform.admit(principal, model="CustomVoice", endpoint="speech",
                                     characters=characters)
    await platform.finish(admission, principal, request_id=request_id, model="CustomVoice",
                          endpoint="speech", status="ok", characters=characters)


async def until(condition, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


def events(receiver) -> list[tuple[str, dict]]:
    out = []
    for headers, body in receiver.received:
        verify_signature(SECRET, body, headers["X-QTTS-Signature"])
        out.append((headers["X-QTTS-Event"], json.loads(body)))
    return out


def test_the_80_and_100_percent_warnings_fire_once_each(platform, receiver_factory):
    receiver = receiver_factory([])
    principal = on_plan(platform, receiver, included={"characters": 100, "audio_seconds": None,
                                                      "voice_clones": None})

    async def main():
        for i, chars in enumerate((50, 35, 10, 10, 50, 40)):  # 50, 85, 95, 105, 155, 195 %
            await use(platform, principal, f"r{i}", chars)
        await until(lambda: len(receiver.received) >= 2)
        # the receiver has the POST before the sender records its answer: wait for the record
        await until(lambda: [a["status"] for a in platform.quota_alerts.list(
            principal.tenant_id)] == ["delivered", "delivered"])
        await platform.deliver_quota_alerts()  # nothing else is pending

    asyncio.run(main())
    got = sorted(events(receiver), key=lambda e: e[1]["threshold"])  # sent concurrently
    assert [(event, body["threshold"]) for event, body in got] == [
        ("quota.warning", 80), ("quota.reached", 100)]
    assert got[0][1] | {"created_at": None} == {
        "type": "quota.warning", "tenant_id": principal.tenant_id, "quota": "characters",
        "threshold": 80, "used": 85, "included": 100, "unit": "characters",
        "period": got[0][1]["period"], "created_at": None}
    assert [a["status"] for a in platform.quota_alerts.list(principal.tenant_id)] == \
        ["delivered", "delivered"]


def test_requests_crossing_together_still_warn_once_per_threshold(platform, receiver_factory):
    receiver = receiver_factory([])
    principal = on_plan(platform, receiver, max_concurrent=None, requests_per_minute=None,
                        included={"characters": 100, "audio_seconds": None, "voice_clones": None})

    async def main():
        await asyncio.gather(*(use(platform, principal, f"r{i}", 5) for i in range(30)))
        await until(lambda: len(receiver.received) >= 2)
        await platform.deliver_quota_alerts()

    asyncio.run(main())
    assert sorted(body["threshold"] for _, body in events(receiver)) == [80, 100]


def test_each_included_quota_warns_on_its_own(platform, receiver_factory):
    receiver = receiver_factory([])
    principal = on_plan(platform, receiver, included={"characters": None, "audio_seconds": 10,
                                                      "voice_clones": None})

    async def main():
        admission = await platform.admit(principal, model="CustomVoice", endpoint="speech")
        await platform.finish(admission, principal, request_id="long", model="CustomVoice",
                              endpoint="speech", status="ok", characters=5, audio_seconds=12.5)
        await until(lambda: len(receiver.received) >= 2)

    asyncio.run(main())
    got = events(receiver)
    assert {(b["quota"], b["threshold"], b["used"], b["included"], b["unit"]) for _, b in got} == {
        ("audio_seconds", 80, 12_500, 10_000, "milliseconds"),
        ("audio_seconds", 100, 12_500, 10_000, "milliseconds")}


def test_a_tenant_without_a_webhook_has_its_warnings_recorded_not_sent(platform):
    principal = on_plan(platform, included={"characters": 10, "audio_seconds": None,
                                            "voice_clones": None})

    async def main():
        await use(platform, principal, "r1", 10)
        await until(lambda: all(a["status"] == "no_webhook"
                                for a in platform.quota_alerts.list(principal.tenant_id)))

    asyncio.run(main())
    assert [(a["threshold"], a["status"]) for a in
            platform.quota_alerts.list(principal.tenant_id)] == [(80, "no_webhook"),
                                                                 (100, "no_webhook")]


def test_a_warning_left_pending_is_delivered_by_any_replicas_job_runner(platform,
                                                                       receiver_factory):
    """The replica that opened a warning may die before sending it: every job runner's loop
    delivers what is pending."""
    receiver = receiver_factory([])
    principal = on_plan(platform, receiver, included={"characters": 10, "audio_seconds": None,
                                                      "voice_clones": None})
    # written by a writer that sends nothing itself (as if its replica died right after)
    platform.usage.record(UsageRecord(request_id="r1", tenant_id=principal.tenant_id,
                                      model="CustomVoice", endpoint="speech", characters=10))
    assert [a["status"] for a in platform.quota_alerts.list(principal.tenant_id)] == \
        ["pending", "pending"]

    async def never(job, segment, index):
        raise AssertionError("no job here")

    async def main():
        runner = platform.job_runner(never)
        runner.start()
        try:
            await until(lambda: len(receiver.received) >= 2)
        finally:
            await runner.stop()

    asyncio.run(main())
    assert sorted(body["threshold"] for _, body in events(receiver)) == [80, 100]
