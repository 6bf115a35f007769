"""Per-tenant limits enforced across every ingress replica: requests per minute, requests in
flight, and quotas per period (characters, audio seconds).

With REDIS_URL set, the counters live in Redis and one Lua script per step makes each
decision atomic for all replicas; without it, `LocalLimiter` keeps them in this process
(exact for one replica, per replica otherwise). Both implement the same algorithm:

* acquire: admit the request if every limit has room, and then count it in the minute's
  window, take a concurrency slot (a lease that expires unless renewed, so a dead replica
  does not hold slots forever) and reserve its characters against the quota.
* settle: release the slot and the reservation and charge what was produced (a failed
  request settles with zeros; a cancelled stream with what was sent).

Audio seconds are unknown until the audio exists, so a request is admitted while the period's
audio is below the limit and charged afterwards: the last request of a period may overshoot.
Windows and periods are UTC: the minute, the calendar day or the calendar month.
"""

from __future__ import annotations

import math
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol

from serve_app.platform.config import TenantLimits
from serve_app.platform.errors import LimitExceeded

#: Dimension -> (header suffix, how the denial reads).
DIMENSIONS = {
    "requests": ("Requests", "requests per minute"),
    "concurrent": ("Concurrent", "requests in flight"),
    "characters": ("Characters", "characters this {period}"),
    "audio_seconds": ("Audio-Seconds", "seconds of audio this {period}"),
}


def period_window(period: str, now: float) -> tuple[str, float]:
    """(the period's key, seconds until it ends) for a UTC day or month."""
    t = datetime.fromtimestamp(now, UTC)
    if period == "day":
        start = t.replace(hour=0, minute=0, second=0, microsecond=0)
        end = start.timestamp() + 86_400
        return start.strftime("%Y-%m-%d"), end - now
    start = t.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    nxt = start.replace(year=start.year + 1, month=1) if start.month == 12 else \
        start.replace(month=start.month + 1)
    return start.strftime("%Y-%m"), nxt.timestamp() - now


@dataclass(frozen=True)
class Counters:
    """What the backend saw, after the decision (the request included when admitted)."""

    denied: str | None
    requests: int
    concurrent: int
    pending_characters: int
    used_characters: int
    used_audio_ms: int


@dataclass(frozen=True)
class Decision:
    """The outcome of an admission, with what the client should be told."""

    allowed: bool
    reason: str | None  # the dimension that refused (see DIMENSIONS), None when allowed
    limits: TenantLimits
    remaining: dict[str, float] = field(default_factory=dict)
    reset_s: dict[str, float] = field(default_factory=dict)
    retry_after_s: int | None = None
    now: float | None = None  # when it was decided (the limiter's clock)

    def headers(self) -> dict[str, str]:
        """X-RateLimit-{Limit,Remaining,Reset}-<Dimension> for each configured limit, and
        Retry-After when refused."""
        out: dict[str, str] = {}
        for dim, remaining in self.remaining.items():
            suffix = DIMENSIONS[dim][0]
            out[f"X-RateLimit-Limit-{suffix}"] = _num(_limit_of(self.limits, dim))
            out[f"X-RateLimit-Remaining-{suffix}"] = _num(max(0.0, remaining))
            if dim in self.reset_s:
                out[f"X-RateLimit-Reset-{suffix}"] = str(math.ceil(self.reset_s[dim]))
        if self.retry_after_s is not None:
            out["Retry-After"] = str(self.retry_after_s)
        return out

    def error(self) -> LimitExceeded:
        what = DIMENSIONS[self.reason or "requests"][1].format(period=self.limits.period)
        resets = ""
        if self.reason in self.reset_s and self.now is not None and self.reason != "requests":
            at = datetime.fromtimestamp(self.now + self.reset_s[self.reason], UTC)
            resets = f"; the quota resets at {at.replace(microsecond=0).isoformat()}"
        return LimitExceeded(
            f"limit reached: {_num(_limit_of(self.limits, self.reason or 'requests'))} {what}; "
            f"retry after {self.retry_after_s} s{resets}",
            headers=self.headers(),
            code="quota_exceeded" if self.reason in ("characters", "audio_seconds") else "rate_limited",
        )


def _limit_of(limits: TenantLimits, dim: str) -> float | None:
    return {
        "requests": limits.requests_per_minute,
        "concurrent": limits.max_concurrent,
        "characters": limits.characters_per_period,
        "audio_seconds": limits.audio_seconds_per_period,
    }[dim]


def _num(value: float | None) -> str:
    if value is None:
        return ""
    return str(int(value)) if float(value).is_integer() else f"{value:.3f}"


def decide(limits: TenantLimits, c: Counters, now: float, characters: int) -> Decision:
    """Turn the backend's counters into a Decision (one place for both backends)."""
    minute_reset = 60 - (now % 60)
    _, period_reset = period_window(limits.period, now)
    remaining: dict[str, float] = {}
    reset: dict[str, float] = {}
    if limits.requests_per_minute is not None:
        remaining["requests"] = limits.requests_per_minute - c.requests
        reset["requests"] = minute_reset
    if limits.max_concurrent is not None:
        remaining["concurrent"] = limits.max_concurrent - c.concurrent
    if limits.characters_per_period is not None:
        remaining["characters"] = limits.characters_per_period - c.used_characters - c.pending_characters
        reset["characters"] = period_reset
    if limits.audio_seconds_per_period is not None:
        remaining["audio_seconds"] = limits.audio_seconds_per_period - c.used_audio_ms / 1000
        reset["audio_seconds"] = period_reset
    retry = None
    if c.denied == "requests":
        retry = math.ceil(minute_reset)
    elif c.denied == "concurrent":
        retry = 1
    elif c.denied == "characters":
        # Refused by what is already charged: wait for the period; by reservations of
        # requests still running: soon.
        charged_out = c.used_characters + characters > (limits.characters_per_period or 0)
        retry = math.ceil(period_reset) if charged_out else 1
    elif c.denied == "audio_seconds":
        retry = math.ceil(period_reset)
    return Decision(c.denied is None, c.denied, limits, remaining, reset, retry, now)


def _arg(value: float | None, scale: float = 1) -> str:
    return "-1" if value is None else str(int(round(value * scale)))


class LimiterBackend(Protocol):
    def acquire(self, tenant_id: str, limits: TenantLimits, lease_id: str, characters: int,
                now: float) -> Counters: ...
    def renew(self, tenant_id: str, lease_id: str, now: float) -> None: ...
    def settle(self, tenant_id: str, limits: TenantLimits, lease_id: str, characters: int,
               audio_ms: int, now: float) -> None: ...
    def close(self) -> None: ...


# ----------------------------------------------------------------------------------- Redis
_ACQUIRE = """
local now = tonumber(ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
for _, id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[4], '-inf', now)) do
  redis.call('HDEL', KEYS[3], id)
end
redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', now)
local rpm = tonumber(redis.call('GET', KEYS[1]) or '0')
local conc = redis.call('ZCARD', KEYS[2])
local pending = 0
for _, v in ipairs(redis.call('HVALS', KEYS[3])) do pending = pending + tonumber(v) end
local used_chars = tonumber(redis.call('HGET', KEYS[5], 'chars') or '0')
local used_audio = tonumber(redis.call('HGET', KEYS[5], 'audio_ms') or '0')
local rpm_limit, conc_limit = tonumber(ARGV[2]), tonumber(ARGV[3])
local chars_limit, audio_limit = tonumber(ARGV[4]), tonumber(ARGV[5])
local chars, lease_until, lease = tonumber(ARGV[6]), tonumber(ARGV[7]), ARGV[8]
local denied = ''
if rpm_limit >= 0 and rpm >= rpm_limit then denied = 'requests'
elseif conc_limit >= 0 and conc >= conc_limit then denied = 'concurrent'
elseif chars_limit >= 0 and used_chars + pending + chars > chars_limit then denied = 'characters'
elseif audio_limit >= 0 and used_audio >= audio_limit then denied = 'audio_seconds'
end
if denied == '' then
  if rpm_limit >= 0 then  -- counted only where it is limited (a job's segments are not)
    redis.call('INCR', KEYS[1])
    redis.call('EXPIRE', KEYS[1], 120)
    rpm = rpm + 1
  end
  local ttl = math.ceil(lease_until - now) + 60
  redis.call('ZADD', KEYS[2], lease_until, lease)
  redis.call('EXPIRE', KEYS[2], ttl)
  if chars > 0 then
    redis.call('HSET', KEYS[3], lease, chars)
    redis.call('ZADD', KEYS[4], lease_until, lease)
    redis.call('EXPIRE', KEYS[3], ttl)
    redis.call('EXPIRE', KEYS[4], ttl)
  end
  conc, pending = conc + 1, pending + chars
end
return {denied, tostring(rpm), tostring(conc), tostring(pending), tostring(used_chars),
        tostring(used_audio)}
"""

_RENEW = """
redis.call('ZADD', KEYS[1], 'XX', ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[2], 'XX', ARGV[1], ARGV[2])
redis.call('EXPIRE', KEYS[1], ARGV[3])
return 1
"""

_SETTLE = """
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[1])
if tonumber(ARGV[2]) > 0 then redis.call('HINCRBY', KEYS[4], 'chars', ARGV[2]) end
if tonumber(ARGV[3]) > 0 then redis.call('HINCRBY', KEYS[4], 'audio_ms', ARGV[3]) end
redis.call('EXPIRE', KEYS[4], ARGV[4])
return 1
"""


class RedisLimiterBackend:
    def __init__(self, url: str, prefix: str, lease_s: float, client=None):
        import redis

        self._redis = client or redis.Redis.from_url(url, socket_timeout=5, health_check_interval=30)
        self._prefix = prefix
        self._lease_s = lease_s
        self._acquire = self._redis.register_script(_ACQUIRE)
        self._renew = self._redis.register_script(_RENEW)
        self._settle = self._redis.register_script(_SETTLE)

    def __repr__(self) -> str:
        return f"RedisLimiterBackend(prefix={self._prefix!r})"

    def _keys(self, tenant_id: str) -> tuple[str, str, str]:
        base = f"{self._prefix}:limits:{{{tenant_id}}}"  # one hash slot per tenant (cluster)
        return f"{base}:conc", f"{base}:pending", f"{base}:pending-exp"

    def _used_key(self, tenant_id: str, period: str, now: float) -> tuple[str, int]:
        key, reset = period_window(period, now)
        return f"{self._prefix}:limits:{{{tenant_id}}}:used:{key}", math.ceil(reset) + 86_400

    def acquire(self, tenant_id, limits, lease_id, characters, now):
        conc, pending, pending_exp = self._keys(tenant_id)
        used, _ = self._used_key(tenant_id, limits.period, now)
        rpm = f"{self._prefix}:limits:{{{tenant_id}}}:rpm:{int(now // 60)}"
        out = self._acquire(
            keys=[rpm, conc, pending, pending_exp, used],
            args=[repr(now), _arg(limits.requests_per_minute), _arg(limits.max_concurrent),
                  _arg(limits.characters_per_period), _arg(limits.audio_seconds_per_period, 1000),
                  str(characters), repr(now + self._lease_s), lease_id],
        )
        denied = out[0].decode() if isinstance(out[0], bytes) else out[0]
        return Counters(denied or None, *(int(float(v)) for v in out[1:]))

    def renew(self, tenant_id, lease_id, now):
        conc, _, pending_exp = self._keys(tenant_id)
        self._renew(keys=[conc, pending_exp],
                    args=[repr(now + self._lease_s), lease_id, str(math.ceil(self._lease_s) + 60)])

    def settle(self, tenant_id, limits, lease_id, characters, audio_ms, now):
        conc, pending, pending_exp = self._keys(tenant_id)
        used, ttl = self._used_key(tenant_id, limits.period, now)
        self._settle(keys=[conc, pending, pending_exp, used],
                     args=[lease_id, str(characters), str(audio_ms), str(ttl)])

    def close(self) -> None:
        self._redis.close()


# ------------------------------------------------------------------------------ in-process
@dataclass
class _TenantState:
    windows: dict[int, int] = field(default_factory=dict)
    leases: dict[str, float] = field(default_factory=dict)  # lease -> expiry
    pending: dict[str, int] = field(default_factory=dict)  # lease -> reserved characters
    used: dict[str, list[int]] = field(default_factory=dict)  # period key -> [chars, audio_ms]


class LocalLimiterBackend:
    """The same algorithm in this process: for one replica, or when Redis is not configured."""

    def __init__(self, lease_s: float):
        self._lease_s = lease_s
        self._lock = threading.Lock()
        self._tenants: dict[str, _TenantState] = {}

    def acquire(self, tenant_id, limits, lease_id, characters, now):
        with self._lock:
            s = self._tenants.setdefault(tenant_id, _TenantState())
            for lease in [k for k, exp in s.leases.items() if exp <= now]:
                s.leases.pop(lease)
                s.pending.pop(lease, None)
            window = int(now // 60)
            s.windows = {w: n for w, n in s.windows.items() if w >= window}
            rpm, conc, pending = s.windows.get(window, 0), len(s.leases), sum(s.pending.values())
            period, _ = period_window(limits.period, now)
            used_chars, used_audio = s.used.get(period, [0, 0])
            denied = None
            if limits.requests_per_minute is not None and rpm >= limits.requests_per_minute:
                denied = "requests"
            elif limits.max_concurrent is not None and conc >= limits.max_concurrent:
                denied = "concurrent"
            elif limits.characters_per_period is not None and \
                    used_chars + pending + characters > limits.characters_per_period:
                denied = "characters"
            elif limits.audio_seconds_per_period is not None and \
                    used_audio >= limits.audio_seconds_per_period * 1000:
                denied = "audio_seconds"
            if denied is None:
                if limits.requests_per_minute is not None:  # a job's segments are not counted
                    s.windows[window] = rpm = rpm + 1
                s.leases[lease_id] = now + self._lease_s
                conc += 1
                if characters > 0:
                    s.pending[lease_id] = characters
                    pending += characters
            return Counters(denied, rpm, conc, pending, used_chars, used_audio)

    def renew(self, tenant_id, lease_id, now):
        with self._lock:
            s = self._tenants.get(tenant_id)
            if s is not None and lease_id in s.leases:
                s.leases[lease_id] = now + self._lease_s

    def settle(self, tenant_id, limits, lease_id, characters, audio_ms, now):
        with self._lock:
            s = self._tenants.setdefault(tenant_id, _TenantState())
            s.leases.pop(lease_id, None)
            s.pending.pop(lease_id, None)
            period, _ = period_window(limits.period, now)
            used = s.used.setdefault(period, [0, 0])
            used[0] += characters
            used[1] += audio_ms

    def close(self) -> None:
        pass


# ---------------------------------------------------------------------------------- facade
class Admission:
    """One admitted request's hold on its tenant's limits: renew while it runs (long streams),
    then settle exactly once with what was produced."""

    def __init__(self, limiter: Limiter, tenant_id: str, limits: TenantLimits, lease_id: str,
                 characters: int, decision: Decision):
        self._limiter = limiter
        self.tenant_id = tenant_id
        self.limits = limits
        self.lease_id = lease_id
        self.characters = characters
        self.decision = decision
        self.settled = False

    @property
    def headers(self) -> dict[str, str]:
        return self.decision.headers()

    def renew(self) -> None:
        if not self.settled:
            self._limiter.backend.renew(self.tenant_id, self.lease_id, self._limiter.clock())

    def settle(self, *, characters: int, audio_seconds: float) -> bool:
        """Charge what was produced and free the slot; False if already settled."""
        if self.settled:
            return False
        self.settled = True
        self._limiter.backend.settle(
            self.tenant_id, self.limits, self.lease_id, max(0, int(characters)),
            max(0, round(audio_seconds * 1000)), self._limiter.clock(),
        )
        return True

    def release(self) -> bool:
        """A failed request: free the slot and the reservation, charge nothing."""
        return self.settle(characters=0, audio_seconds=0.0)


class Limiter:
    def __init__(self, backend: LimiterBackend, clock=time.time):
        self.backend = backend
        self.clock = clock

    def __repr__(self) -> str:
        return f"Limiter({self.backend!r})"

    def try_acquire(
        self, tenant_id: str, limits: TenantLimits, *, characters: int = 0
    ) -> tuple[Decision, Admission | None]:
        """Admit or refuse without raising: (decision, the admission when allowed)."""
        decision, lease_id = self._acquire(tenant_id, limits, characters)
        if not decision.allowed:
            return decision, None
        return decision, Admission(self, tenant_id, limits, lease_id, characters, decision)

    def acquire(self, tenant_id: str, limits: TenantLimits, *, characters: int = 0) -> Admission:
        """Admit the request or raise LimitExceeded (429 + Retry-After + X-RateLimit-*)."""
        decision, lease_id = self._acquire(tenant_id, limits, characters)
        if not decision.allowed:
            raise decision.error()
        return Admission(self, tenant_id, limits, lease_id, characters, decision)

    def _acquire(self, tenant_id: str, limits: TenantLimits, characters: int) -> tuple[Decision, str]:
        lease_id = uuid.uuid4().hex
        now = self.clock()
        counters = self.backend.acquire(tenant_id, limits, lease_id, characters, now)
        return decide(limits, counters, now, characters), lease_id

    def close(self) -> None:
        self.backend.close()


def open_limiter(redis_url: str | None, *, prefix: str, lease_s: float) -> Limiter:
    if redis_url:
        return Limiter(RedisLimiterBackend(redis_url, prefix, lease_s))
    return Limiter(LocalLimiterBackend(lease_s))
