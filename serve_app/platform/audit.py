"""A tenant's audit log of its saved voices: who created, used and deleted which voice, when,
from which API key, under which service key. Rows hold ids, times and numbers only, never
audio, a transcript, a statement or text to speak. Read at GET /v1/audit (the tenant's own
rows only: row-level security on PostgreSQL, the tenant filter everywhere)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import select
from sqlalchemy.orm import Session

from serve_app.platform.db import Database
from serve_app.platform.models import AuditEventRow, utcnow

AuditAction = Literal["voice.created", "voice.used", "voice.deleted"]
AUDIT_ACTIONS: tuple[str, ...] = ("voice.created", "voice.used", "voice.deleted")
MAX_PAGE = 500


@dataclass(frozen=True)
class Actor:
    """Who acts: the API key (None: the open demo, a trusted network, the handle API) and
    the request it came in."""

    api_key_id: str | None = None
    request_id: str | None = None


@dataclass(frozen=True)
class AuditEvent:
    id: int
    at: datetime
    action: str
    voice_id: str | None
    api_key_id: str | None
    service_key_id: str | None
    request_id: str | None
    detail: dict[str, Any] | None

    def as_dict(self) -> dict:
        return {"object": "audit_event", "id": self.id, "at": self.at.isoformat(),
                "action": self.action, "voice_id": self.voice_id,
                "api_key_id": self.api_key_id, "service_key_id": self.service_key_id,
                "request_id": self.request_id, "detail": self.detail or {}}


def record_event(session: Session, tenant_id: str, action: AuditAction, actor: Actor, *,
           voice_id: str | None, service_key_id: str | None,
           detail: dict[str, float | int | str] | None = None) -> None:
    """Add an event in the caller's transaction (so it commits with what it records)."""
    session.add(AuditEventRow(tenant_id=tenant_id, at=utcnow(), action=action,
                              voice_id=voice_id, api_key_id=actor.api_key_id,
                              service_key_id=service_key_id, request_id=actor.request_id,
                              detail=detail))


class AuditLog:
    def __init__(self, db: Database):
        self._db = db

    def list(self, tenant_id: str, *, limit: int = 100, voice_id: str | None = None,
             before: int | None = None) -> list[AuditEvent]:
        """The tenant's events, newest first; `before`: only those older than that event id
        (the next page)."""
        query = select(AuditEventRow).where(AuditEventRow.tenant_id == tenant_id)
        if voice_id:
            query = query.where(AuditEventRow.voice_id == voice_id)
        if before is not None:
            query = query.where(AuditEventRow.id < before)
        query = query.order_by(AuditEventRow.id.desc()).limit(max(1, min(limit, MAX_PAGE)))
        with self._db.transaction(tenant_id) as session:
            return [AuditEvent(r.id, r.at, r.action, r.voice_id, r.api_key_id, r.service_key_id,
                               r.request_id, r.detail) for r in session.scalars(query).all()]
