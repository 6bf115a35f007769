"""Per-tenant limits, the same behaviour in-process and through Redis; Redis shares them
between ingress replicas."""

from __future__ import annotations

import math

import pytest

from serve_app.platform.config import TenantLimits
from serve_app.platform.errors import LimitExceeded
from serve_app.platform.limits import (
    Limiter,
    LocalLimiterBackend,
    RedisLimiterBackend,
    period_window,
)

T0 = 1_699_999_990.0  # 2023-11-14 22:13:10 UTC: 10 s into a minute, mid-month


class Clock:
    def __init__(self, now: float = T0):
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture(params=["local", "redis"])
def make_limiter(request):
    """Limiter replicas: with Redis every call gives a replica sharing the same counters."""
    clock = Clock()
    if request.param == "local":
        backend = LocalLimiterBackend(lease_s=30)
        return lambda: Limiter(backend, clock), clock
    url, prefix = request.getfixturevalue("redis_server"), request.getfixturevalue("redis_prefix")
    return lambda: Limiter(RedisLimiterBackend(url, prefix, lease_s=30), clock), clock


def test_requests_per_minute_refuse_with_retry_after_until_the_next_minute(make_limiter):
    make, clock = make_limiter
    limiter, limits = make(), TenantLimits(requests_per_minute=3)
    for expected_remaining in (2, 1, 0):
        admission = limiter.acquire("t1", limits)
        assert admission.headers["X-RateLimit-Remaining-Requests"] == str(expected_remaining)
        admission.settle(characters=1, audio_seconds=0.1)
    with pytest.raises(LimitExceeded) as refused:
        limiter.acquire("t1", limits)
    assert refused.value.status == 429
    assert refused.value.headers["Retry-After"] == "50"
    assert refused.value.headers["X-RateLimit-Limit-Requests"] == "3"
    assert refused.value.headers["X-RateLimit-Remaining-Requests"] == "0"
    limiter.acquire("t2", limits)  # another tenant has its own window
    clock.now += 50
    limiter.acquire("t1", limits)


def test_work_admitted_without_a_request_limit_leaves_the_minute_window_alone(make_limiter):
    """A job's segments are admitted with the tenant's quotas only (its submission was the
    request): they must not use up the per-minute requests of the tenant's next calls."""
    make, _ = make_limiter
    limiter = make()
    for _ in range(5):
        limiter.acquire("t1", TenantLimits(characters_per_period=10_000)).settle(
            characters=10, audio_seconds=0.5)
    admission = limiter.acquire("t1", TenantLimits(requests_per_minute=1))
    assert admission.headers["X-RateLimit-Remaining-Requests"] == "0"


def test_concurrent_requests_hold_slots_until_settled(make_limiter):
    make, _ = make_limiter
    limiter, limits = make(), TenantLimits(max_concurrent=2)
    first, _second = limiter.acquire("t", limits), limiter.acquire("t", limits)
    decision, admission = limiter.try_acquire("t", limits)
    assert admission is None and decision.reason == "concurrent" and decision.retry_after_s == 1
    first.release()
    limiter.acquire("t", limits)


def test_a_dead_replicas_slots_expire_with_their_lease(make_limiter):
    make, clock = make_limiter
    limiter, limits = make(), TenantLimits(max_concurrent=1)
    held = limiter.acquire("t", limits)  # its replica dies: never settled
    with pytest.raises(LimitExceeded):
        limiter.acquire("t", limits)
    clock.now += 20
    held.renew()  # a live stream renews its lease ...
    clock.now += 20
    with pytest.raises(LimitExceeded):
        limiter.acquire("t", limits)
    clock.now += 31  # ... a dead one does not
    limiter.acquire("t", limits)


def test_characters_are_reserved_then_charged_for_what_was_produced(make_limiter):
    make, _ = make_limiter
    limiter, limits = make(), TenantLimits(characters_per_period=100)
    running = limiter.acquire("t", limits, characters=60)
    decision, _ = limiter.try_acquire("t", limits, characters=50)
    assert decision.reason == "characters" and decision.retry_after_s == 1  # reserved, not spent
    running.release()  # failed: not billed
    ok = limiter.acquire("t", limits, characters=50)
    ok.settle(characters=50, audio_seconds=3.0)
    cancelled = limiter.acquire("t", limits, characters=40)
    cancelled.settle(characters=20, audio_seconds=1.0)  # a cancelled stream: what was sent
    assert cancelled.settle(characters=40, audio_seconds=2.0) is False  # settles once
    decision, _ = limiter.try_acquire("t", limits, characters=31)
    assert decision.reason == "characters"
    assert decision.remaining["characters"] == 30
    _, period_reset = period_window("month", T0)
    assert decision.retry_after_s == math.ceil(period_reset) > 86_400  # charged out: next month
    assert decision.headers()["X-RateLimit-Reset-Characters"] == str(math.ceil(period_reset))
    limiter.acquire("t", limits, characters=30)


def test_audio_seconds_quota_refuses_once_spent(make_limiter):
    make, _ = make_limiter
    limiter, limits = make(), TenantLimits(audio_seconds_per_period=10, period="day")
    limiter.acquire("t", limits).settle(characters=5, audio_seconds=9.5)
    admission = limiter.acquire("t", limits)
    assert admission.headers["X-RateLimit-Remaining-Audio-Seconds"] == "0.500"
    admission.settle(characters=5, audio_seconds=0.5)
    with pytest.raises(LimitExceeded) as refused:
        limiter.acquire("t", limits)
    assert refused.value.code == "quota_exceeded"
    assert "seconds of audio this day" in refused.value.message


def test_unlimited_tenants_get_no_limit_headers(make_limiter):
    make, _ = make_limiter
    admission = make().acquire("t", TenantLimits(), characters=10**9)
    assert admission.headers == {}


def test_two_replicas_share_every_limit_through_redis(redis_server, redis_prefix):
    clock = Clock()
    a, b = (Limiter(RedisLimiterBackend(redis_server, redis_prefix, lease_s=30), clock)
            for _ in range(2))
    limits = TenantLimits(requests_per_minute=4, max_concurrent=2, characters_per_period=50)
    held = a.acquire("t", limits, characters=20)
    b.acquire("t", limits, characters=20).settle(characters=20, audio_seconds=1)
    with pytest.raises(LimitExceeded, match="characters"):
        b.acquire("t", limits, characters=20)
    b.acquire("t", limits, characters=5)
    with pytest.raises(LimitExceeded, match="in flight"):
        a.acquire("t", limits, characters=1)
    held.release()
    a.acquire("t", limits, characters=1)
    with pytest.raises(LimitExceeded, match="per minute"):
        b.acquire("t", limits)
