"""API keys: random, shown once, stored only as an HMAC-SHA256 hash, revocable, scoped.

A key looks like `qtts_<43 url-safe characters>` (32 random bytes). The database keeps
HMAC-SHA256(API_KEY_PEPPER, key) (a plain SHA-256 when no pepper is set), so a lookup is one
indexed equality and a stolen database yields no usable key; the first 12 characters are kept
for display. Scopes restrict a key to model kinds (`model:CustomVoice`) and endpoints
(`endpoint:speech`); a key with no scope of a family may use all of that family.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

from pydantic import SecretStr
from sqlalchemy import select

from serve_app.platform.config import TenantLimits
from serve_app.platform.db import Database
from serve_app.platform.errors import (
    AuthenticationError,
    InvalidRequest,
    NotFound,
    PermissionDenied,
)
from serve_app.platform.models import ApiKey, Tenant, TenantLimitsRow, new_id, utcnow
from serve_app.platform.plans import PlanGrant, effective_limits, grant_at
from serve_app.platform.tenants import _limits, find_tenant

KEY_PREFIX = "qtts_"
DISPLAY_CHARS = 12

#: Endpoint families a key can be scoped to (the ingress names the one a request uses).
ENDPOINTS = ("synthesize", "speech", "design", "clone", "voices", "jobs", "usage",
             "dictionaries")


def _model_names() -> tuple[str, ...]:
    from serve_app.app.args import (
        MODEL_DEPLOYMENTS,  # late: serve_app.app.args imports this package
    )

    return MODEL_DEPLOYMENTS


def validate_scopes(scopes: Iterable[str]) -> list[str]:
    """Normalize `model:NAME` / `endpoint:NAME` scopes; unknown ones are errors."""
    out: list[str] = []
    models = {m.lower(): m for m in _model_names()}
    for raw in scopes:
        family, _, value = raw.strip().partition(":")
        if family == "model" and value.lower() in models:
            scope = f"model:{models[value.lower()]}"
        elif family == "endpoint" and value.lower() in ENDPOINTS:
            scope = f"endpoint:{value.lower()}"
        else:
            allowed = [f"model:{m}" for m in models.values()] + [f"endpoint:{e}" for e in ENDPOINTS]
            raise InvalidRequest(f"unknown scope {raw!r}; allowed: {', '.join(allowed)}", param="scope")
        if scope not in out:
            out.append(scope)
    return out


@dataclass(frozen=True)
class Principal:
    """Who is calling: the tenant, the key, what it may use, the tenant's limits (its own
    over its plan's) and its plan (None: no plan, nothing restricted by one)."""

    tenant_id: str
    tenant_name: str
    key_id: str | None
    scopes: tuple[str, ...] = ()
    limits: TenantLimits = field(default_factory=TenantLimits)
    plan: PlanGrant | None = None

    def allows(self, *, model: str | None = None, endpoint: str | None = None) -> bool:
        for family, value in (("model", model), ("endpoint", endpoint)):
            granted = [s.split(":", 1)[1] for s in self.scopes if s.startswith(family + ":")]
            if value is not None and granted and value not in granted:
                return False
        return True

    def require(self, *, model: str | None = None, endpoint: str | None = None,
                feature: str | None = None) -> None:
        """403 when the key's scopes or the tenant's plan (naming the model kind or feature
        it lacks) do not allow this."""
        if self.plan is not None:
            self.plan.require(model=model, endpoint=endpoint, feature=feature)
        if not self.allows(model=model, endpoint=endpoint):
            what = f"model {model}" if model and not self.allows(model=model) else f"endpoint {endpoint}"
            raise PermissionDenied(
                f"this API key is not allowed to use {what} (scopes: {', '.join(self.scopes)})",
                param="model" if what.startswith("model") else None,
            )


@dataclass(frozen=True)
class KeyInfo:
    id: str
    tenant_id: str
    name: str | None
    prefix: str
    scopes: tuple[str, ...]
    created_at: datetime
    revoked_at: datetime | None

    def as_dict(self) -> dict:
        return {
            "id": self.id, "tenant_id": self.tenant_id, "name": self.name,
            "prefix": self.prefix, "scopes": list(self.scopes),
            "created_at": self.created_at.isoformat(),
            "revoked_at": self.revoked_at.isoformat() if self.revoked_at else None,
        }


@dataclass(frozen=True)
class CreatedKey:
    """A new key: `secret` is the only time the key itself exists outside the client."""

    info: KeyInfo
    secret: str

    def __repr__(self) -> str:  # never print the key by accident
        return f"CreatedKey(info={self.info!r}, secret='{self.info.prefix}...')"


def _key_info(row: ApiKey) -> KeyInfo:
    return KeyInfo(row.id, row.tenant_id, row.name, row.prefix, tuple(row.scopes or ()),
                   row.created_at, row.revoked_at)


def key_from_headers(headers: Mapping[str, str]) -> str | None:
    """The key of `Authorization: Bearer <key>` or `X-API-Key: <key>` (header names are
    matched case-insensitively)."""
    lowered = {k.lower(): v for k, v in headers.items()}
    auth = lowered.get("authorization", "").strip()
    if auth:
        scheme, _, value = auth.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
    api_key = lowered.get("x-api-key", "").strip()
    return api_key or None


def admin_token_sent(headers: Mapping[str, str], admin_token: SecretStr | None) -> bool:
    """Whether `Authorization: Bearer` carries the admin token (compared in constant time;
    never true when ADMIN_TOKEN is unset)."""
    if admin_token is None or not admin_token.get_secret_value():
        return False
    lowered = {k.lower(): v for k, v in headers.items()}
    scheme, _, supplied = lowered.get("authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(
        supplied.strip().encode(), admin_token.get_secret_value().encode())


class ApiKeys:
    def __init__(self, db: Database, pepper: bytes = b"", cache_s: float = 10.0):
        self._db = db
        self._pepper = pepper
        self._cache_s = cache_s
        self._cache: dict[str, tuple[float, Principal]] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"ApiKeys(db={self._db!r}, peppered={bool(self._pepper)})"

    def hash(self, key: str) -> str:
        if self._pepper:
            return hmac.new(self._pepper, key.encode(), hashlib.sha256).hexdigest()
        return hashlib.sha256(key.encode()).hexdigest()

    # ------------------------------------------------------------------------- admin
    def create(self, tenant: str, *, name: str | None = None, scopes: Iterable[str] = ()) -> CreatedKey:
        scopes = validate_scopes(scopes)
        secret = KEY_PREFIX + secrets.token_urlsafe(32)
        with self._db.admin_transaction() as session:
            owner = find_tenant(session, tenant)
            row = ApiKey(
                id=new_id("key"), tenant_id=owner.id, name=name, key_hash=self.hash(secret),
                prefix=secret[:DISPLAY_CHARS], scopes=scopes, created_at=utcnow(),
            )
            session.add(row)
            session.flush()
            return CreatedKey(_key_info(row), secret)

    def revoke(self, key_id: str) -> KeyInfo:
        with self._db.admin_transaction() as session:
            row = session.get(ApiKey, key_id)
            if row is None:
                raise NotFound(f"no API key {key_id!r}", param="key_id")
            if row.revoked_at is None:
                row.revoked_at = utcnow()
            info = _key_info(row)
        with self._lock:
            self._cache = {h: v for h, v in self._cache.items() if v[1].key_id != key_id}
        return info

    def list(self, tenant: str) -> list[KeyInfo]:
        with self._db.admin_transaction() as session:
            owner = find_tenant(session, tenant)
            rows = session.scalars(
                select(ApiKey).where(ApiKey.tenant_id == owner.id).order_by(ApiKey.created_at)
            ).all()
            return [_key_info(r) for r in rows]

    # ----------------------------------------------------------------------- request path
    def authenticate(self, headers: Mapping[str, str]) -> Principal:
        """The principal of a request's key, or AuthenticationError / PermissionDenied."""
        key = key_from_headers(headers)
        if key is None:
            raise AuthenticationError(
                "an API key is required: send 'Authorization: Bearer <key>' or 'X-API-Key: <key>'",
                code="missing_api_key",
            )
        return self.verify(key)

    def verify(self, key: str) -> Principal:
        digest = self.hash(key)
        now = time.monotonic()
        with self._lock:
            cached = self._cache.get(digest)
        if cached is not None and now - cached[0] < self._cache_s:
            return cached[1]
        with self._db.admin_transaction() as session:
            row = session.scalar(select(ApiKey).where(ApiKey.key_hash == digest))
            if row is None or not hmac.compare_digest(row.key_hash, digest):
                raise AuthenticationError("the API key is not valid")
            if row.revoked_at is not None:
                raise AuthenticationError("the API key has been revoked", code="revoked_api_key")
            tenant = session.get(Tenant, row.tenant_id)
            if tenant is None or tenant.disabled:
                raise PermissionDenied("this tenant is disabled", code="tenant_disabled")
            grant = grant_at(session, tenant.id, utcnow())
            own = _limits(session.get(TenantLimitsRow, tenant.id))
            principal = Principal(
                tenant_id=tenant.id, tenant_name=tenant.name, key_id=row.id,
                scopes=tuple(row.scopes or ()), limits=effective_limits(own, grant), plan=grant,
            )
        if self._cache_s > 0:
            with self._lock:
                if len(self._cache) > 10_000:
                    self._cache.clear()
                self._cache[digest] = (now, principal)
        return principal
