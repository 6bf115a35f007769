"""Durable async jobs in the database: submit, claim with a lease, heartbeat, finish once.

A job accepted is a row; a runner claims it by setting a lease (owner + expiry) in the same
transaction that finds it (FOR UPDATE SKIP LOCKED on PostgreSQL; SQLite's BEGIN IMMEDIATE
serializes the whole claim). A runner renews its lease while it works; a job whose lease
expired (its runner died) is claimed again, up to `max_attempts` claims. The result is
written under a per-attempt blob key and recorded only if this runner still holds the lease
and no result exists, so a job's result is written once even if two runners finish it.
"""

from __future__ import annotations

import base64
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import and_, case, or_, select, update

from serve_app.platform.blobs import BlobStore
from serve_app.platform.crypto import Keyring
from serve_app.platform.db import Database
from serve_app.platform.errors import InvalidRequest, JobNotReady, NotFound
from serve_app.platform.jobs.webhooks import check_webhook_url
from serve_app.platform.models import JobRow, new_id, utcnow

TERMINAL = ("succeeded", "failed")


class JobRequest(BaseModel):
    """What to synthesize: the model, the (long) text, the mode's parameters and the output.

    `params` holds what the model kind needs (speaker, language, instruct, description,
    voice, seed, ...) exactly as the synchronous endpoint takes it; `output` is a
    RenderOptions dump (format, sample_rate, speed, ...)."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field(min_length=1, max_length=32)
    text: str = Field(min_length=1)
    params: dict[str, Any] = Field(default_factory=dict)
    output: dict[str, Any] = Field(default_factory=dict)


@dataclass(frozen=True)
class JobTicket:
    """What a submit returns (HTTP 202). `webhook_secret` is set only when the server made
    one; it is shown this once."""

    id: str
    status: str
    webhook_secret: str | None = None

    def __repr__(self) -> str:
        return f"JobTicket(id={self.id!r}, status={self.status!r})"


@dataclass(frozen=True)
class JobStatus:
    id: str
    tenant_id: str
    model: str
    status: str  # queued | running | succeeded | failed
    progress: float
    attempts: int
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    audio_seconds: float | None
    content_type: str | None
    error: dict | None
    webhook_status: str | None

    @property
    def done(self) -> bool:
        return self.status in TERMINAL

    def as_dict(self) -> dict:
        def iso(d: datetime | None) -> str | None:
            return d.isoformat() if d else None

        return {
            "id": self.id, "object": "tts.job", "model": self.model, "status": self.status,
            "progress": round(self.progress, 4), "attempts": self.attempts,
            "created_at": iso(self.created_at), "started_at": iso(self.started_at),
            "finished_at": iso(self.finished_at), "audio_seconds": self.audio_seconds,
            "content_type": self.content_type, "error": self.error,
            "webhook_status": self.webhook_status,
        }


@dataclass(frozen=True)
class ClaimedJob:
    id: str
    tenant_id: str
    api_key_id: str | None
    request: JobRequest
    attempt: int
    owner: str


@dataclass(frozen=True)
class PendingWebhook:
    job: JobStatus
    url: str
    secret: str
    attempts: int

    def __repr__(self) -> str:
        return f"PendingWebhook(job={self.job.id!r}, attempts={self.attempts})"


def _status(row: JobRow) -> JobStatus:
    return JobStatus(row.id, row.tenant_id, row.request.get("model", ""), row.status, row.progress,
                     row.attempts, row.created_at, row.started_at, row.finished_at,
                     row.result_audio_seconds, row.result_content_type, row.error,
                     row.webhook_status)


def _secret_aad(job_id: str) -> bytes:
    return f"job:{job_id}:webhook".encode()


class JobStore:
    def __init__(self, db: Database, blobs: BlobStore, keyring: Keyring, *, lease_s: float,
                 max_attempts: int, max_text_chars: int, webhook_lease_s: float = 600.0,
                 clock: Callable[[], datetime] = utcnow):
        self._db = db
        self._blobs = blobs
        self._keyring = keyring
        self.lease_s = lease_s
        self.max_attempts = max_attempts
        self.max_text_chars = max_text_chars
        self.webhook_lease_s = webhook_lease_s
        self.clock = clock

    # ------------------------------------------------------------------------ clients
    def submit(self, tenant_id: str, request: JobRequest, *, api_key_id: str | None = None,
               webhook_url: str | None = None, webhook_secret: str | None = None) -> JobTicket:
        if len(request.text) > self.max_text_chars:
            raise InvalidRequest(f"text is {len(request.text)} characters long; a job takes at "
                                 f"most {self.max_text_chars}", param="text")
        made_secret = None
        if webhook_url:
            check_webhook_url(webhook_url)
            if not webhook_secret:
                webhook_secret = made_secret = "whsec_" + secrets.token_urlsafe(24)
        job_id = new_id("job")
        row = JobRow(
            id=job_id, tenant_id=tenant_id, api_key_id=api_key_id,
            request=request.model_dump(mode="json"), status="queued", progress=0.0, attempts=0,
            max_attempts=self.max_attempts, webhook_url=webhook_url or None,
            webhook_secret=self._keyring.encrypt_text(webhook_secret, _secret_aad(job_id))
            if webhook_url else None,
            webhook_attempts=0, created_at=self.clock(),
        )
        with self._db.transaction() as session:
            session.add(row)
        return JobTicket(job_id, "queued", made_secret)

    def _row(self, session, tenant_id: str, job_id: str) -> JobRow:
        row = session.get(JobRow, job_id)
        if row is None or row.tenant_id != tenant_id:
            raise NotFound(f"no job {job_id!r}", param="job_id")
        return row

    def get(self, tenant_id: str, job_id: str) -> JobStatus:
        with self._db.transaction() as session:
            return _status(self._row(session, tenant_id, job_id))

    def list(self, tenant_id: str, limit: int = 100) -> list[JobStatus]:
        with self._db.transaction() as session:
            rows = session.scalars(select(JobRow).where(JobRow.tenant_id == tenant_id)
                                   .order_by(JobRow.created_at.desc()).limit(limit)).all()
            return [_status(r) for r in rows]

    def result(self, tenant_id: str, job_id: str) -> tuple[bytes, str]:
        """(audio bytes, content type) of a finished job."""
        with self._db.transaction() as session:
            row = self._row(session, tenant_id, job_id)
            status, blob, content_type = row.status, row.result_blob, row.result_content_type
        if status != "succeeded" or blob is None:
            raise JobNotReady(f"job {job_id} is {status}; its audio is available once it "
                              "has succeeded", param="job_id")
        return self._blobs.get(blob), content_type or "application/octet-stream"

    # ------------------------------------------------------------------------ runners
    def claim(self, owner: str) -> ClaimedJob | None:
        """Take the oldest queued job, or one whose lease expired; None when there is none."""
        now = self.clock()
        expired = and_(JobRow.status == "running", JobRow.lease_expires_at < now)
        with self._db.transaction() as session:
            session.execute(
                update(JobRow).where(expired, JobRow.attempts >= JobRow.max_attempts)
                .values(status="failed", finished_at=now, lease_owner=None,
                        error={"code": "job_abandoned", "message": "the job's runner stopped "
                               "responding on every attempt"},
                        webhook_status=_pending_webhook(), webhook_lease_until=None)
                .execution_options(synchronize_session=False)
            )
            row = session.scalar(
                select(JobRow).where(or_(JobRow.status == "queued",
                                         and_(expired, JobRow.attempts < JobRow.max_attempts)))
                .order_by(JobRow.created_at, JobRow.id).limit(1)
                .with_for_update(skip_locked=True)
            )
            if row is None:
                return None
            row.status = "running"
            row.attempts += 1
            row.lease_owner = owner
            row.lease_expires_at = now + timedelta(seconds=self.lease_s)
            row.heartbeat_at = now
            row.started_at = row.started_at or now
            return ClaimedJob(row.id, row.tenant_id, row.api_key_id,
                              JobRequest.model_validate(row.request), row.attempts, owner)

    def _owned(self, job: ClaimedJob):
        return (JobRow.id == job.id, JobRow.lease_owner == job.owner,
                JobRow.attempts == job.attempt, JobRow.status == "running")

    def heartbeat(self, job: ClaimedJob, progress: float | None = None) -> bool:
        """Renew the lease (and record progress); False if this runner lost the job."""
        now = self.clock()
        values: dict[str, Any] = {"lease_expires_at": now + timedelta(seconds=self.lease_s),
                                  "heartbeat_at": now}
        if progress is not None:
            values["progress"] = max(0.0, min(1.0, progress))
        with self._db.transaction() as session:
            result = session.execute(update(JobRow).where(*self._owned(job)).values(**values)
                                     .execution_options(synchronize_session=False))
            return result.rowcount == 1

    def complete(self, job: ClaimedJob, audio: bytes, content_type: str, extension: str,
                 audio_seconds: float) -> bool:
        """Record the result once. False (and nothing recorded) if the lease was lost."""
        key = f"jobs/{job.tenant_id}/{job.id}/result-{job.attempt}.{extension}"
        self._blobs.put(key, audio)
        now = self.clock()
        with self._db.transaction() as session:
            result = session.execute(
                update(JobRow).where(*self._owned(job), JobRow.result_blob.is_(None))
                .values(status="succeeded", progress=1.0, result_blob=key,
                        result_content_type=content_type, result_audio_seconds=audio_seconds,
                        finished_at=now, lease_owner=None, lease_expires_at=None,
                        webhook_status=_pending_webhook(),
                        webhook_lease_until=now + timedelta(seconds=self.webhook_lease_s))
                .execution_options(synchronize_session=False)
            )
            won = result.rowcount == 1
        if not won:
            self._blobs.delete(key)
        return won

    def fail(self, job: ClaimedJob, code: str, message: str, *, retry: bool) -> bool:
        """Give the job back to the queue (retry, while attempts remain) or fail it."""
        now = self.clock()
        with self._db.transaction() as session:
            row = session.scalar(select(JobRow).where(*self._owned(job)).with_for_update())
            if row is None:
                return False
            row.lease_owner, row.lease_expires_at = None, None
            row.error = {"code": code, "message": message}
            if retry and row.attempts < row.max_attempts:
                row.status = "queued"
            else:
                row.status, row.finished_at = "failed", now
                if row.webhook_url:
                    row.webhook_status = "pending"
                    row.webhook_lease_until = now + timedelta(seconds=self.webhook_lease_s)
            return True

    # ----------------------------------------------------------------------- webhooks
    def claim_webhook(self, owner_lease_s: float | None = None) -> PendingWebhook | None:
        """A finished job whose webhook is due and not being delivered by anyone."""
        now = self.clock()
        with self._db.transaction() as session:
            row = session.scalar(
                select(JobRow).where(JobRow.status.in_(TERMINAL), JobRow.webhook_status == "pending",
                                     or_(JobRow.webhook_lease_until.is_(None),
                                         JobRow.webhook_lease_until < now))
                .order_by(JobRow.finished_at).limit(1).with_for_update(skip_locked=True)
            )
            if row is None:
                return None
            row.webhook_lease_until = now + timedelta(seconds=owner_lease_s or self.webhook_lease_s)
            return self._pending(row)

    def pending_webhook(self, tenant_id: str, job_id: str) -> PendingWebhook | None:
        """The webhook of a job this runner has just finished (its lease was set then)."""
        with self._db.transaction() as session:
            row = self._row(session, tenant_id, job_id)
            return self._pending(row) if row.webhook_status == "pending" else None

    def _pending(self, row: JobRow) -> PendingWebhook:
        secret = self._keyring.decrypt_text(row.webhook_secret or "", _secret_aad(row.id))
        return PendingWebhook(_status(row), row.webhook_url or "", secret, row.webhook_attempts)

    def webhook_attempted(self, job_id: str, attempts: int, error: str | None) -> None:
        with self._db.transaction() as session:
            session.execute(update(JobRow).where(JobRow.id == job_id).values(
                webhook_attempts=attempts, webhook_last_error=error,
                webhook_lease_until=self.clock() + timedelta(seconds=self.webhook_lease_s))
                .execution_options(synchronize_session=False))

    def webhook_finished(self, job_id: str, delivered: bool, error: str | None) -> None:
        with self._db.transaction() as session:
            session.execute(update(JobRow).where(JobRow.id == job_id).values(
                webhook_status="delivered" if delivered else "failed",
                webhook_last_error=error, webhook_lease_until=None)
                .execution_options(synchronize_session=False))

    # ----------------------------------------------------------------------- rotation
    def reencrypt_secrets(self) -> int:
        """Re-seal webhook secrets not sealed with the newest key; returns how many were."""
        n = 0
        with self._db.transaction() as session:
            rows = session.scalars(select(JobRow).where(JobRow.webhook_secret.is_not(None))).all()
            for row in rows:
                sealed = row.webhook_secret or ""
                if Keyring.key_id_of(base64.b64decode(sealed)) == self._keyring.primary_id:
                    continue
                plain = self._keyring.decrypt_text(sealed, _secret_aad(row.id))
                row.webhook_secret = self._keyring.encrypt_text(plain, _secret_aad(row.id))
                n += 1
        return n


def _pending_webhook():
    """'pending' for jobs with a webhook, NULL otherwise (a SQL CASE)."""
    return case((JobRow.webhook_url.is_not(None), "pending"), else_=None)
