"""Tenants and their limits: the admin side of who may use the platform and how much."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from serve_app.platform.config import TenantLimits
from serve_app.platform.db import Database
from serve_app.platform.errors import Conflict, InvalidRequest, NotFound
from serve_app.platform.models import Tenant, TenantLimitsRow, new_id, utcnow


@dataclass(frozen=True)
class TenantInfo:
    id: str
    name: str
    disabled: bool
    created_at: datetime
    limits: TenantLimits

    def as_dict(self) -> dict:
        return {
            "id": self.id,
            "name": self.name,
            "disabled": self.disabled,
            "created_at": self.created_at.isoformat(),
            "limits": self.limits.model_dump(),
        }


def _limits(row: TenantLimitsRow | None) -> TenantLimits:
    if row is None:
        return TenantLimits()
    return TenantLimits(
        requests_per_minute=row.requests_per_minute,
        max_concurrent=row.max_concurrent,
        characters_per_period=row.characters_per_period,
        audio_seconds_per_period=row.audio_seconds_per_period,
        period=row.period,  # type: ignore[arg-type]
    )


def _info(tenant: Tenant, limits: TenantLimitsRow | None) -> TenantInfo:
    return TenantInfo(tenant.id, tenant.name, tenant.disabled, tenant.created_at, _limits(limits))


def find_tenant(session: Session, ref: str) -> Tenant:
    """A tenant by id or by name."""
    tenant = session.get(Tenant, ref) or session.scalar(select(Tenant).where(Tenant.name == ref))
    if tenant is None:
        raise NotFound(f"no tenant {ref!r}", param="tenant")
    return tenant


class TenantDirectory:
    def __init__(self, db: Database, default_limits: TenantLimits | None = None):
        self._db = db
        self._default_limits = default_limits or TenantLimits()

    def create(self, name: str, limits: TenantLimits | None = None) -> TenantInfo:
        name = name.strip()
        if not name or len(name) > 100:
            raise InvalidRequest("a tenant name has 1 to 100 characters", param="name")
        limits = limits or self._default_limits
        tenant = Tenant(id=new_id("ten"), name=name, disabled=False, created_at=utcnow())
        try:
            with self._db.admin_transaction() as session:
                session.add(tenant)
                session.flush()
                row = TenantLimitsRow(tenant_id=tenant.id, updated_at=utcnow(), **limits.model_dump())
                session.add(row)
        except IntegrityError as exc:
            raise Conflict(f"a tenant named {name!r} exists", param="name") from exc
        return _info(tenant, row)

    def get_or_create(self, name: str) -> TenantInfo:
        """The tenant `name`, created (with the default limits) on first use; a replica that
        races another to create it reads the one that won."""
        try:
            return self.get(name)
        except NotFound:
            try:
                return self.create(name)
            except Conflict:
                return self.get(name)

    def get(self, ref: str) -> TenantInfo:
        with self._db.admin_transaction() as session:
            tenant = find_tenant(session, ref)
            return _info(tenant, session.get(TenantLimitsRow, tenant.id))

    def list(self) -> list[TenantInfo]:
        with self._db.admin_transaction() as session:
            tenants = session.scalars(select(Tenant).order_by(Tenant.created_at, Tenant.id)).all()
            limits = {r.tenant_id: r for r in session.scalars(select(TenantLimitsRow)).all()}
            return [_info(t, limits.get(t.id)) for t in tenants]

    def set_limits(self, ref: str, limits: TenantLimits) -> TenantInfo:
        with self._db.admin_transaction() as session:
            tenant = find_tenant(session, ref)
            row = session.get(TenantLimitsRow, tenant.id)
            if row is None:
                row = TenantLimitsRow(tenant_id=tenant.id)
                session.add(row)
            for field, value in limits.model_dump().items():
                setattr(row, field, value)
            row.updated_at = utcnow()
            return _info(tenant, row)

    def set_disabled(self, ref: str, disabled: bool) -> TenantInfo:
        with self._db.admin_transaction() as session:
            tenant = find_tenant(session, ref)
            tenant.disabled = disabled
            return _info(tenant, session.get(TenantLimitsRow, tenant.id))
