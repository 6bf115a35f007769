"""Durable async jobs in the database: submit, claim fairly with a lease, checkpoint each
segment, finish once.

A job accepted is a row; a runner claims it by setting a lease (owner + expiry) in the same
transaction that finds it. Claims are serialized (a transaction-scoped advisory lock on
PostgreSQL, BEGIN IMMEDIATE on SQLite), which is what makes the fair queue exact with any
number of runners: the claim picks the tenant with the fewest jobs running, then the one
served least recently, then the oldest job, and skips tenants already at
`max_running_per_tenant`. A runner renews its lease while it works; a job whose lease expired
(its runner died) is claimed again, up to `max_attempts` claims.

Each finished segment's audio is checkpointed (sealed with the keyring, in the blob store,
under `jobs/<tenant>/<job>/segment-<index>`) and counted in `segments_done`, so a job taken
up again continues at the next segment: a finished segment is never synthesized (or billed)
twice. The result is sealed too (AAD bound to the tenant and job), written under a
per-attempt blob key and recorded only if this runner still holds the lease and no result
exists, so a job's result is written once even if two runners finish it.
"""

from __future__ import annotations

import base64
import logging
import secrets
import struct
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import and_, case, func, or_, select, text, update

from serve_app.platform.blobs import BlobStore
from serve_app.platform.crypto import DecryptionError, Keyring
from serve_app.platform.db import Database
from serve_app.platform.errors import InvalidRequest, JobNotReady, NotFound
from serve_app.platform.jobs.webhooks import check_webhook_url
from serve_app.platform.models import JobRow, new_id, utcnow
from serve_app.protocol.fields import MaxNewTokens, Seed

logger = logging.getLogger("qtts.platform.jobs")

TERMINAL = ("succeeded", "failed")
#: The PostgreSQL advisory lock that serializes claims (any constant; per database).
CLAIM_LOCK = 0x71747473_6A6F6273 & 0x7FFF_FFFF_FFFF_FFFF  # "qttsjobs"
_NEVER = datetime.min.replace(tzinfo=UTC)
_SEGMENT_MAGIC = b"QSG1"


class JobParams(BaseModel):
    """The synthesis parameters of a job, as the synchronous endpoints take them. Which ones
    apply depends on the model kind: `speaker` and `instruct` (CustomVoice), `description`
    (VoiceDesign), `voice`, a saved voice's id (VoiceClone); `language`, `seed` and
    `max_new_tokens` (a cap per segment) apply to all."""

    model_config = ConfigDict(extra="forbid")

    language: str | None = Field(None, max_length=32)
    seed: Seed | None = None
    max_new_tokens: MaxNewTokens | None = None
    speaker: str | None = Field(None, max_length=100)
    instruct: str | None = None
    description: str | None = None
    voice: str | None = Field(None, max_length=100, description="A saved voice's id")
    normalize: bool = True
    #: The pronunciation dictionaries named at submission (None: the tenant's defaults, as
    #: they are when each segment is spoken)
    pronunciation_dictionaries: tuple[str, ...] | None = None
    #: word timestamps stored with the result (its captions); rows before it: none
    timestamps: Literal["none", "word"] = "none"
    #: "ssml": `text` is an SSML document, split at its parsed <p>/<s>/sentence boundaries
    input_format: Literal["text", "ssml"] = "text"


class JobRequest(BaseModel):
    """What to synthesize: the model, the (long) text, the mode's parameters and the output.

    `params` is a `JobParams` (a dict of its fields is accepted and converted, so rows
    stored before it was typed still load); `output` is a RenderOptions dump (format,
    sample_rate, speed, ...)."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field(min_length=1, max_length=32)
    text: str = Field(min_length=1)
    params: JobParams = Field(default_factory=JobParams)
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
    """A job in one runner's hands. `segments_done` segments have their audio checkpointed
    (from an earlier attempt); `segment_chars` is the length the text was cut at then (None:
    not started, cut at the runner's setting)."""

    id: str
    tenant_id: str
    api_key_id: str | None
    request: JobRequest
    attempt: int
    owner: str
    segments_done: int = 0
    segment_chars: int | None = None


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


def _result_aad(tenant_id: str, job_id: str) -> bytes:
    return f"job:{tenant_id}:{job_id}:result".encode()


def _words_key(result_key: str) -> str:
    """The word timestamps' blob beside a result's ("result-2.mp3" -> "words-2.json")."""
    folder, name = result_key.rsplit("/", 1)
    return f"{folder}/{name.replace('result-', 'words-', 1).rsplit('.', 1)[0]}.json"


def _words_aad(tenant_id: str, job_id: str) -> bytes:
    return f"job-words:{tenant_id}:{job_id}".encode()


def _segment_aad(tenant_id: str, job_id: str, index: int) -> bytes:
    return f"job:{tenant_id}:{job_id}:segment:{index}".encode()


def _segment_key(tenant_id: str, job_id: str, index: int) -> str:
    return f"jobs/{tenant_id}/{job_id}/segment-{index}"


def pack_segment(audio: np.ndarray, sample_rate: int) -> bytes:
    """A segment's audio as bytes: magic, sample rate (uint32), float32 samples (LE)."""
    samples = np.asarray(audio, dtype="<f4").reshape(-1)
    return _SEGMENT_MAGIC + struct.pack("<I", sample_rate) + samples.tobytes()


def unpack_segment(data: bytes) -> tuple[np.ndarray, int]:
    if not data.startswith(_SEGMENT_MAGIC) or len(data) < 8 or (len(data) - 8) % 4:
        raise DecryptionError("not a segment checkpoint")
    (rate,) = struct.unpack("<I", data[4:8])
    return np.frombuffer(data[8:], dtype="<f4").astype(np.float32), rate


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
        with self._db.transaction(tenant_id) as session:
            session.add(row)
        return JobTicket(job_id, "queued", made_secret)

    def _row(self, session, tenant_id: str, job_id: str) -> JobRow:
        row = session.get(JobRow, job_id)
        if row is None or row.tenant_id != tenant_id:
            raise NotFound(f"no job {job_id!r}", param="job_id")
        return row

    def get(self, tenant_id: str, job_id: str) -> JobStatus:
        with self._db.transaction(tenant_id) as session:
            return _status(self._row(session, tenant_id, job_id))

    def list(self, tenant_id: str, limit: int = 100) -> list[JobStatus]:
        with self._db.transaction(tenant_id) as session:
            rows = session.scalars(select(JobRow).where(JobRow.tenant_id == tenant_id)
                                   .order_by(JobRow.created_at.desc()).limit(limit)).all()
            return [_status(r) for r in rows]

    def result(self, tenant_id: str, job_id: str) -> tuple[bytes, str]:
        """(audio bytes, content type) of a finished job."""
        with self._db.transaction(tenant_id) as session:
            row = self._row(session, tenant_id, job_id)
            status, blob, content_type = row.status, row.result_blob, row.result_content_type
            sealed = row.result_key_id is not None
        if status != "succeeded" or blob is None:
            raise JobNotReady(f"job {job_id} is {status}; its audio is available once it "
                              "has succeeded", param="job_id")
        data = self._blobs.get(blob)
        if sealed:  # results written before revision 0002 are in the clear
            data = self._keyring.decrypt(data, _result_aad(tenant_id, job_id))
        return data, content_type or "application/octet-stream"

    def words(self, tenant_id: str, job_id: str) -> bytes:
        """The word timestamps (JSON) of a finished job that asked for them."""
        with self._db.transaction(tenant_id) as session:
            row = self._row(session, tenant_id, job_id)
            status, blob = row.status, row.result_blob
        if status != "succeeded" or blob is None:
            raise JobNotReady(f"job {job_id} is {status}; its word timestamps are available "
                              "once it has succeeded", param="job_id")
        key = _words_key(blob)
        if not self._blobs.exists(key):
            raise NotFound(f"job {job_id} has no word timestamps: submit it with "
                           "timestamps 'word'", param="job_id")
        return self._keyring.decrypt(self._blobs.get(key), _words_aad(tenant_id, job_id))

    # ------------------------------------------------------------------------ runners
    def claim(self, owner: str, *, max_running_per_tenant: int | None = None
              ) -> ClaimedJob | None:
        """Take a queued job, or one whose lease expired, from the tenant with the fewest
        jobs running (then the one served least recently, then the oldest job), skipping
        tenants with `max_running_per_tenant` jobs running already; None when there is none."""
        now = self.clock()
        expired = and_(JobRow.status == "running", JobRow.lease_expires_at < now)
        claimable = or_(JobRow.status == "queued",
                        and_(expired, JobRow.attempts < JobRow.max_attempts))
        with self._db.admin_transaction() as session:
            self._serialize_claims(session)
            abandoned = session.execute(
                select(JobRow.tenant_id, JobRow.id, JobRow.segments_done)
                .where(expired, JobRow.attempts >= JobRow.max_attempts)
            ).all()
            if abandoned:
                session.execute(
                    update(JobRow).where(JobRow.id.in_([job_id for _, job_id, _ in abandoned]))
                    .values(status="failed", finished_at=now, lease_owner=None,
                            error={"code": "job_abandoned", "message": "the job's runner "
                                   "stopped responding on every attempt"},
                            webhook_status=_pending_webhook(), webhook_lease_until=None)
                    .execution_options(synchronize_session=False)
                )
            row = self._fair_pick(session, claimable, now, max_running_per_tenant)
            claimed = None
            if row is not None:
                row.status = "running"
                row.attempts += 1
                row.lease_owner = owner
                row.lease_expires_at = now + timedelta(seconds=self.lease_s)
                row.heartbeat_at = row.claimed_at = now
                row.started_at = row.started_at or now
                claimed = ClaimedJob(row.id, row.tenant_id, row.api_key_id,
                                     JobRequest.model_validate(row.request), row.attempts, owner,
                                     row.segments_done or 0, row.segment_chars)
        for tenant_id, job_id, done in abandoned:
            self._drop_segments(tenant_id, job_id, (done or 0) + 1)
        return claimed

    def _serialize_claims(self, session) -> None:
        """One claim at a time across all runners, so the per-tenant counts a claim reads
        cannot change under it (SQLite: the transaction's BEGIN IMMEDIATE does it already)."""
        if self._db.is_postgresql:
            session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": CLAIM_LOCK})

    def _fair_pick(self, session, claimable, now: datetime, cap: int | None) -> JobRow | None:
        waiting = session.execute(
            select(JobRow.tenant_id, func.min(JobRow.created_at)).where(claimable)
            .group_by(JobRow.tenant_id)
        ).all()
        if not waiting:
            return None
        tenants = [tenant_id for tenant_id, _ in waiting]
        running = dict(session.execute(
            select(JobRow.tenant_id, func.count()).where(
                JobRow.tenant_id.in_(tenants), JobRow.status == "running",
                JobRow.lease_expires_at >= now)
            .group_by(JobRow.tenant_id)
        ).all())
        served = dict(session.execute(
            select(JobRow.tenant_id, func.max(JobRow.claimed_at))
            .where(JobRow.tenant_id.in_(tenants)).group_by(JobRow.tenant_id)
        ).all())
        order = sorted(waiting, key=lambda w: (running.get(w[0], 0), served.get(w[0]) or _NEVER,
                                               w[1], w[0]))
        for tenant_id, _ in order:
            if cap is not None and running.get(tenant_id, 0) >= cap:
                continue
            row = session.scalar(
                select(JobRow).where(claimable, JobRow.tenant_id == tenant_id)
                .order_by(JobRow.created_at, JobRow.id).limit(1)
                .with_for_update(skip_locked=True)
            )
            if row is not None:
                return row
        return None

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
        with self._db.transaction(job.tenant_id) as session:
            result = session.execute(update(JobRow).where(*self._owned(job)).values(**values)
                                     .execution_options(synchronize_session=False))
            return result.rowcount == 1

    def checkpoint(self, job: ClaimedJob, index: int, audio: np.ndarray, sample_rate: int, *,
                   segment_chars: int, progress: float) -> bool:
        """Keep segment `index`'s audio (sealed) and count it done, renewing the lease; False
        (and nothing counted) if this runner lost the job. Segments are checkpointed in
        order: a later attempt continues at `segments_done`."""
        key = _segment_key(job.tenant_id, job.id, index)
        self._blobs.put(key, self._keyring.encrypt(pack_segment(audio, sample_rate),
                                                   _segment_aad(job.tenant_id, job.id, index)))
        now = self.clock()
        with self._db.transaction(job.tenant_id) as session:
            result = session.execute(
                update(JobRow).where(*self._owned(job), JobRow.segments_done == index)
                .values(segments_done=index + 1, segment_chars=segment_chars,
                        progress=max(0.0, min(1.0, progress)), heartbeat_at=now,
                        lease_expires_at=now + timedelta(seconds=self.lease_s))
                .execution_options(synchronize_session=False)
            )
            return result.rowcount == 1

    def load_segment(self, job: ClaimedJob, index: int) -> tuple[np.ndarray, int]:
        """(float32 audio, sample rate) of a checkpointed segment; NotFound if its blob is
        gone, DecryptionError if it does not open."""
        key = _segment_key(job.tenant_id, job.id, index)
        return unpack_segment(self._keyring.decrypt(
            self._blobs.get(key), _segment_aad(job.tenant_id, job.id, index)))

    def _drop_segments(self, tenant_id: str, job_id: str, count: int) -> None:
        for index in range(count):
            try:
                self._blobs.delete(_segment_key(tenant_id, job_id, index))
            except Exception:  # noqa: BLE001 - a leftover checkpoint is only wasted space
                logger.warning("job %s: could not delete segment checkpoint %d", job_id, index)

    def complete(self, job: ClaimedJob, audio: bytes, content_type: str, extension: str,
                 audio_seconds: float, *, segments: int = 0, words: bytes | None = None
                 ) -> bool:
        """Record the result (sealed) once, and `words` (its word timestamps, JSON) sealed
        beside it; then drop the `segments` checkpoints. False (and nothing recorded) if the
        lease was lost."""
        key = f"jobs/{job.tenant_id}/{job.id}/result-{job.attempt}.{extension}"
        if words is not None:
            self._blobs.put(_words_key(key), self._keyring.encrypt(
                words, _words_aad(job.tenant_id, job.id)))
        self._blobs.put(key, self._keyring.encrypt(audio, _result_aad(job.tenant_id, job.id)))
        now = self.clock()
        with self._db.transaction(job.tenant_id) as session:
            result = session.execute(
                update(JobRow).where(*self._owned(job), JobRow.result_blob.is_(None))
                .values(status="succeeded", progress=1.0, result_blob=key,
                        result_key_id=self._keyring.primary_id,
                        result_content_type=content_type, result_audio_seconds=audio_seconds,
                        finished_at=now, lease_owner=None, lease_expires_at=None,
                        webhook_status=_pending_webhook(),
                        webhook_lease_until=now + timedelta(seconds=self.webhook_lease_s))
                .execution_options(synchronize_session=False)
            )
            won = result.rowcount == 1
        if not won:
            self._blobs.delete(key)
            if words is not None:
                self._blobs.delete(_words_key(key))
        else:
            self._drop_segments(job.tenant_id, job.id, segments)
        return won

    def fail(self, job: ClaimedJob, code: str, message: str, *, retry: bool) -> bool:
        """Give the job back to the queue (retry, while attempts remain: its checkpoints stay
        for the next attempt) or fail it (and drop them)."""
        now = self.clock()
        with self._db.transaction(job.tenant_id) as session:
            row = session.scalar(select(JobRow).where(*self._owned(job)).with_for_update())
            if row is None:
                return False
            row.lease_owner, row.lease_expires_at = None, None
            row.error = {"code": code, "message": message}
            if retry and row.attempts < row.max_attempts:
                row.status = "queued"
                return True
            row.status, row.finished_at = "failed", now
            if row.webhook_url:
                row.webhook_status = "pending"
                row.webhook_lease_until = now + timedelta(seconds=self.webhook_lease_s)
            done = row.segments_done or 0
        self._drop_segments(job.tenant_id, job.id, done + 1)
        return True

    # ----------------------------------------------------------------------- webhooks
    def claim_webhook(self, owner_lease_s: float | None = None) -> PendingWebhook | None:
        """A finished job whose webhook is due and not being delivered by anyone."""
        now = self.clock()
        with self._db.admin_transaction() as session:
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
        with self._db.transaction(tenant_id) as session:
            row = self._row(session, tenant_id, job_id)
            return self._pending(row) if row.webhook_status == "pending" else None

    def _pending(self, row: JobRow) -> PendingWebhook:
        secret = self._keyring.decrypt_text(row.webhook_secret or "", _secret_aad(row.id))
        return PendingWebhook(_status(row), row.webhook_url or "", secret, row.webhook_attempts)

    def webhook_attempted(self, job_id: str, attempts: int, error: str | None) -> None:
        with self._db.admin_transaction() as session:
            session.execute(update(JobRow).where(JobRow.id == job_id).values(
                webhook_attempts=attempts, webhook_last_error=error,
                webhook_lease_until=self.clock() + timedelta(seconds=self.webhook_lease_s))
                .execution_options(synchronize_session=False))

    def webhook_finished(self, job_id: str, delivered: bool, error: str | None) -> None:
        with self._db.admin_transaction() as session:
            session.execute(update(JobRow).where(JobRow.id == job_id).values(
                webhook_status="delivered" if delivered else "failed",
                webhook_last_error=error, webhook_lease_until=None)
                .execution_options(synchronize_session=False))

    # ----------------------------------------------------------------------- rotation
    def reencrypt(self) -> dict[str, int]:
        """Re-seal everything the job store keeps sealed with an older key (webhook secrets,
        results and their word timestamps, segment checkpoints of unfinished jobs) under the newest one, and seal
        results stored in the clear before revision 0002; how many of each were."""
        return {"webhook_secrets": self._reencrypt_webhook_secrets(),
                "job_results": self._reencrypt_results(),
                "job_segments": self._reencrypt_segments()}

    def _reencrypt_webhook_secrets(self) -> int:
        n = 0
        with self._db.admin_transaction() as session:
            rows = session.scalars(select(JobRow).where(JobRow.webhook_secret.is_not(None))).all()
            for row in rows:
                sealed = row.webhook_secret or ""
                if Keyring.key_id_of(base64.b64decode(sealed)) == self._keyring.primary_id:
                    continue
                plain = self._keyring.decrypt_text(sealed, _secret_aad(row.id))
                row.webhook_secret = self._keyring.encrypt_text(plain, _secret_aad(row.id))
                n += 1
        return n

    def _reencrypt_results(self) -> int:
        with self._db.admin_transaction() as session:
            rows = session.execute(
                select(JobRow.id, JobRow.tenant_id, JobRow.result_blob, JobRow.result_key_id)
                .where(JobRow.result_blob.is_not(None),
                       or_(JobRow.result_key_id.is_(None),
                           JobRow.result_key_id != self._keyring.primary_id))
            ).all()
        for job_id, tenant_id, key, key_id in rows:
            aad = _result_aad(tenant_id, job_id)
            data = self._blobs.get(key)
            plain = data if key_id is None else self._keyring.decrypt(data, aad)
            # a result in the clear moves to a new key in the same update that marks it
            # sealed, so a reader never takes the sealed bytes for audio
            new_key = f"{key}.sealed" if key_id is None else key
            self._blobs.put(new_key, self._keyring.encrypt(plain, aad))
            words = _words_key(key)  # sealed with the result's key, re-sealed with it
            if key_id is not None and self._blobs.exists(words):
                words_aad = _words_aad(tenant_id, job_id)
                self._blobs.put(words, self._keyring.encrypt(
                    self._keyring.decrypt(self._blobs.get(words), words_aad), words_aad))
            with self._db.admin_transaction() as session:
                session.execute(update(JobRow).where(JobRow.id == job_id,
                                                     JobRow.result_blob == key)
                                .values(result_blob=new_key,
                                        result_key_id=self._keyring.primary_id)
                                .execution_options(synchronize_session=False))
            if new_key != key:
                self._blobs.delete(key)
        return len(rows)

    def _reencrypt_segments(self) -> int:
        with self._db.admin_transaction() as session:
            rows = session.execute(
                select(JobRow.id, JobRow.tenant_id, JobRow.segments_done)
                .where(JobRow.status.not_in(TERMINAL), JobRow.segments_done > 0)
            ).all()
        n = 0
        for job_id, tenant_id, done in rows:
            for index in range(done):
                key, aad = _segment_key(tenant_id, job_id, index), _segment_aad(tenant_id, job_id, index)
                try:
                    data = self._blobs.get(key)
                except NotFound:
                    continue
                if Keyring.key_id_of(data) == self._keyring.primary_id:
                    continue
                self._blobs.put(key, self._keyring.encrypt(self._keyring.decrypt(data, aad), aad))
                n += 1
        return n


def _pending_webhook():
    """'pending' for jobs with a webhook, NULL otherwise (a SQL CASE)."""
    return case((JobRow.webhook_url.is_not(None), "pending"), else_=None)
