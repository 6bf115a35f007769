"""The platform's tables (SQLAlchemy 2 ORM). The schema itself is made by the Alembic
migrations under alembic/versions; a test checks the two agree.

Times are stored as naive UTC and read back as aware UTC on every backend.
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_id(prefix: str) -> str:
    """An opaque id such as `voice_3kq...`: random, so ids leak no counts or order."""
    return f"{prefix}_{secrets.token_hex(10)}"


class UTCDateTime(TypeDecorator):
    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect) -> datetime | None:
        return None if value is None else value.replace(tzinfo=UTC)


#: An autoincrementing 64-bit key (SQLite only autoincrements INTEGER PRIMARY KEY).
BigId = BigInteger().with_variant(Integer, "sqlite")


class Base(DeclarativeBase):
    type_annotation_map = {datetime: UTCDateTime, dict[str, Any]: JSON, list[str]: JSON}


class Tenant(Base):
    __tablename__ = "tenants"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class TenantConsentRow(Base):
    """A tenant's own consent policy (serve_app.platform.consent.policy); none: inherited."""

    __tablename__ = "tenant_consent"

    tenant_id: Mapped[str] = mapped_column(
        ForeignKey("tenants.id", ondelete="CASCADE"), primary_key=True)
    voices: Mapped[str | None] = mapped_column(String(16))
    one_shot: Mapped[str | None] = mapped_column(String(16))
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class TenantLimitsRow(Base):
    __tablename__ = "tenant_limits"

    tenant_id: Mapped[str] = mapped_column(
        ForeignKey("tenants.id", ondelete="CASCADE"), primary_key=True
    )
    requests_per_minute: Mapped[int | None] = mapped_column(Integer)
    max_concurrent: Mapped[int | None] = mapped_column(Integer)
    characters_per_period: Mapped[int | None] = mapped_column(BigInteger)
    audio_seconds_per_period: Mapped[float | None] = mapped_column(Float)
    period: Mapped[str] = mapped_column(String(8), default="month")
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class ApiKey(Base):
    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(
        ForeignKey("tenants.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str | None] = mapped_column(String(100))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))
    scopes: Mapped[list[str]] = mapped_column(default=list)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column()


class UsageRecordRow(Base):
    __tablename__ = "usage_records"
    __table_args__ = (Index("ix_usage_records_tenant_created", "tenant_id", "created_at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    request_id: Mapped[str] = mapped_column(String(64), unique=True)
    tenant_id: Mapped[str] = mapped_column(String(40))
    api_key_id: Mapped[str | None] = mapped_column(String(40))
    model: Mapped[str] = mapped_column(String(32))
    endpoint: Mapped[str] = mapped_column(String(32))
    voice: Mapped[str | None] = mapped_column(String(100))
    characters: Mapped[int] = mapped_column(Integer, default=0)
    audio_seconds: Mapped[float] = mapped_column(Float, default=0.0)
    processing_ms: Mapped[int] = mapped_column(Integer, default=0)
    streamed: Mapped[bool] = mapped_column(Boolean, default=False)
    status: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # pricing, computed once when the row is written (serve_app.platform.pricing); money is
    # integer minor units of the configured currency
    operation: Mapped[str] = mapped_column(String(16), default="synthesis",
                                           server_default="synthesis")  # | voice | job
    audio_ms: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    plan_version_id: Mapped[str | None] = mapped_column(String(40))
    billable_characters: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    billable_audio_ms: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    billable_operations: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    cost_characters: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    cost_audio: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    cost_operation: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    cost: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")


class UsageTotalRow(Base):
    """A tenant's running totals for one month, plan version and model kind: what its usage
    rows add up to, kept in the transaction that writes each row (pricing.add_to_totals), so
    pricing a row reads one small row instead of summing the month's usage rows."""

    __tablename__ = "usage_totals"

    tenant_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    month: Mapped[datetime] = mapped_column(primary_key=True)  # its first instant (UTC)
    plan_version_id: Mapped[str] = mapped_column(String(40), primary_key=True)  # "": no plan
    model: Mapped[str] = mapped_column(String(32), primary_key=True)
    characters: Mapped[int] = mapped_column(BigInteger, default=0)
    audio_ms: Mapped[int] = mapped_column(BigInteger, default=0)
    voices: Mapped[int] = mapped_column(BigInteger, default=0)  # rows of operation "voice"
    billable_characters: Mapped[int] = mapped_column(BigInteger, default=0)
    billable_audio_ms: Mapped[int] = mapped_column(BigInteger, default=0)


class VoiceRow(Base):
    __tablename__ = "voices"
    __table_args__ = (UniqueConstraint("tenant_id", "name", name="uq_voices_tenant_name"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(
        ForeignKey("tenants.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(100))
    kind: Mapped[str] = mapped_column(String(16))  # clone | design
    language: Mapped[str | None] = mapped_column(String(32))
    description: Mapped[str | None] = mapped_column(Text)
    consent: Mapped[bool] = mapped_column(Boolean, default=False)
    consent_at: Mapped[datetime | None] = mapped_column()
    prompt_blob: Mapped[str] = mapped_column(String(255))
    reference_blob: Mapped[str | None] = mapped_column(String(255))
    key_id: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # erasure (serve_app.platform.voice_keys): the voice's own data key, sealed by the service
    # key `key_id`; NULL: a voice saved before 0005, its blobs sealed by the service key itself
    data_key: Mapped[str | None] = mapped_column(Text)
    # consent (serve_app.platform.consent): the level it was saved under, the speaker
    # similarity of a checked consent recording, and its evidence blob (statement, code,
    # similarity, the recording), sealed as the voice's other data
    consent_level: Mapped[str | None] = mapped_column(String(16))
    consent_similarity: Mapped[float | None] = mapped_column(Float)
    consent_blob: Mapped[str | None] = mapped_column(String(255))


class ConsentStatementRow(Base):
    """A consent statement issued to a tenant: its text holds a one-time code; a clone voice
    saved under `checked` consent redeems it once, before `expires_at`."""

    __tablename__ = "consent_statements"
    __table_args__ = (Index("ix_consent_statements_tenant_code", "tenant_id", "code"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    code: Mapped[str] = mapped_column(String(16))
    language: Mapped[str] = mapped_column(String(8))
    text: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime] = mapped_column()
    used_at: Mapped[datetime | None] = mapped_column()


class AuditEventRow(Base):
    """One event of a tenant's saved voices (created, used, deleted): who (the API key), what,
    when, under which service key. Never audio, a transcript or text to speak."""

    __tablename__ = "audit_events"
    __table_args__ = (Index("ix_audit_events_tenant_at", "tenant_id", "at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    at: Mapped[datetime] = mapped_column(default=utcnow)
    action: Mapped[str] = mapped_column(String(32))  # voice.created | voice.used | voice.deleted
    voice_id: Mapped[str | None] = mapped_column(String(40))
    api_key_id: Mapped[str | None] = mapped_column(String(40))
    service_key_id: Mapped[str | None] = mapped_column(String(64))
    request_id: Mapped[str | None] = mapped_column(String(100))
    detail: Mapped[dict[str, Any] | None] = mapped_column()  # ids and numbers only


class JobRow(Base):
    __tablename__ = "jobs"
    __table_args__ = (Index("ix_jobs_status_created", "status", "created_at"),
                      Index("ix_jobs_tenant_claimed", "tenant_id", "claimed_at"))

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(
        ForeignKey("tenants.id", ondelete="CASCADE"), index=True
    )
    api_key_id: Mapped[str | None] = mapped_column(String(40))
    request: Mapped[dict[str, Any]] = mapped_column()
    status: Mapped[str] = mapped_column(String(16), default="queued")
    progress: Mapped[float] = mapped_column(Float, default=0.0)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    max_attempts: Mapped[int] = mapped_column(Integer, default=3)
    lease_owner: Mapped[str | None] = mapped_column(String(64))
    lease_expires_at: Mapped[datetime | None] = mapped_column()
    heartbeat_at: Mapped[datetime | None] = mapped_column()
    claimed_at: Mapped[datetime | None] = mapped_column()  # last claim: the fair queue's clock
    # resume: segments whose audio is checkpointed (sealed blobs), cut at `segment_chars`
    segments_done: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    segment_chars: Mapped[int | None] = mapped_column(Integer)
    result_blob: Mapped[str | None] = mapped_column(String(255))
    result_key_id: Mapped[str | None] = mapped_column(String(64))  # NULL: stored in the clear
    result_content_type: Mapped[str | None] = mapped_column(String(64))
    result_audio_seconds: Mapped[float | None] = mapped_column(Float)
    error: Mapped[dict[str, Any] | None] = mapped_column()
    webhook_url: Mapped[str | None] = mapped_column(Text)
    webhook_secret: Mapped[str | None] = mapped_column(Text)  # encrypted (voice keyring)
    webhook_status: Mapped[str | None] = mapped_column(String(16))  # pending|delivered|failed
    webhook_attempts: Mapped[int] = mapped_column(Integer, default=0)
    webhook_lease_until: Mapped[datetime | None] = mapped_column()
    webhook_last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column()
    finished_at: Mapped[datetime | None] = mapped_column()


class PlanRow(Base):
    __tablename__ = "plans"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    archived_at: Mapped[datetime | None] = mapped_column()
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class PlanVersionRow(Base):
    """One version of a plan's terms (serve_app.platform.plans.PlanTerms): immutable; a
    change of terms is a new version, in force from its `effective_from`."""

    __tablename__ = "plan_versions"
    __table_args__ = (UniqueConstraint("plan_id", "version", name="uq_plan_versions_plan_version"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    plan_id: Mapped[str] = mapped_column(ForeignKey("plans.id", ondelete="CASCADE"))
    version: Mapped[int] = mapped_column(Integer)
    terms: Mapped[dict[str, Any]] = mapped_column()
    effective_from: Mapped[datetime] = mapped_column()
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class TenantPlanRow(Base):
    """A tenant's move to a plan, in force from `effective_from` until its next move."""

    __tablename__ = "tenant_plans"
    __table_args__ = (Index("ix_tenant_plans_tenant_effective", "tenant_id", "effective_from"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    plan_id: Mapped[str] = mapped_column(ForeignKey("plans.id"))
    effective_from: Mapped[datetime] = mapped_column()
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class InvoiceRow(Base):
    __tablename__ = "invoices"
    __table_args__ = (UniqueConstraint("tenant_id", "period", name="uq_invoices_tenant_period"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    period: Mapped[str] = mapped_column(String(7))  # YYYY-MM
    currency: Mapped[str] = mapped_column(String(3))
    total: Mapped[int] = mapped_column(BigInteger)
    lines: Mapped[list[dict[str, Any]]] = mapped_column(JSON)  # serve_app.platform.invoices
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class TenantWebhookRow(Base):
    """Where a tenant's account events (quota warnings) are POSTed, signed as jobs' are."""

    __tablename__ = "tenant_webhooks"

    tenant_id: Mapped[str] = mapped_column(
        ForeignKey("tenants.id", ondelete="CASCADE"), primary_key=True)
    url: Mapped[str] = mapped_column(Text)
    secret: Mapped[str] = mapped_column(Text)  # sealed with the voice keyring
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class QuotaAlertRow(Base):
    """One quota warning: (tenant, period, quota, threshold) is unique, so each fires once."""

    __tablename__ = "quota_alerts"
    __table_args__ = (UniqueConstraint("tenant_id", "period", "quota", "threshold",
                                       name="uq_quota_alerts_once"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    period: Mapped[str] = mapped_column(String(7))
    quota: Mapped[str] = mapped_column(String(32))
    threshold: Mapped[int] = mapped_column(Integer)  # percent: 80 | 100
    used: Mapped[int] = mapped_column(BigInteger)
    included: Mapped[int] = mapped_column(BigInteger)
    status: Mapped[str] = mapped_column(String(16), default="pending")  # |delivered|failed|no_webhook
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    lease_until: Mapped[datetime | None] = mapped_column()
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class PronunciationDictionaryRow(Base):
    """A tenant's pronunciation dictionary: its entries (a list of {grapheme, alias,
    case_sensitive, word_boundaries}), `version` (1, then one more on every change), and
    `default_rank` (0, 1, 2: its place among the tenant's default dictionaries; NULL: not
    one)."""

    __tablename__ = "pronunciation_dictionaries"
    __table_args__ = (Index("ix_pronunciation_dictionaries_tenant", "tenant_id"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(100))
    description: Mapped[str | None] = mapped_column(Text)
    language: Mapped[str | None] = mapped_column(String(35))  # a PLS file's xml:lang
    version: Mapped[int] = mapped_column(Integer, default=1)
    entries: Mapped[list[Any]] = mapped_column(JSON)
    default_rank: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
