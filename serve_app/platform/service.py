"""`Platform`: the one object the ingress holds, with async methods for the request path.

    platform = Platform.open(args.platform)                    # per ingress replica
    principal = await platform.authenticate(request.headers)   # 401 / 403
    admission = await platform.admit(principal, model=..., endpoint=..., characters=len(text))
    ...synthesize...                                            # 429 raised above if over
    await platform.finish(admission, request_id=..., audio_seconds=..., status="ok")

The services below it are synchronous and short (database, Redis, blob store); every async
method runs them in a worker thread so the event loop never blocks on I/O.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import time
from collections.abc import Mapping

from deployments.args import CloneArgs, ConsentLevel
from deployments.engine.types import VoicePrompt
from serve_app.app.args import VOICE_CLONE, VOICE_DESIGN
from serve_app.platform.audit import Actor, AuditEvent, AuditLog
from serve_app.platform.blobs import BlobStore, open_blob_store
from serve_app.platform.config import PlatformArgs, TenantLimits
from serve_app.platform.consent import (
    ConsentPolicy,
    ConsentStatements,
    Statement,
    resolve_consent,
)
from serve_app.platform.consent.policy import ConsentUse
from serve_app.platform.crypto import Keyring
from serve_app.platform.db import Database, safe_url
from serve_app.platform.errors import ConfigurationError, PermissionDenied
from serve_app.platform.invoices import Invoice, Invoices
from serve_app.platform.isolation import Isolation, inspect_isolation
from serve_app.platform.jobs.runner import (
    Encode,
    JobRunner,
    Mark,
    Segmenter,
    Synthesize,
    Timings,
    render_output,
)
from serve_app.platform.jobs.store import JobRequest, JobStatus, JobStore, JobTicket
from serve_app.platform.jobs.webhooks import WebhookSender
from serve_app.platform.keys import ApiKeys, Principal
from serve_app.platform.limits import Admission, Limiter, open_limiter
from serve_app.platform.models import TenantConsentRow, utcnow
from serve_app.platform.plans import PlanCatalog, PlanGrant, effective_limits
from serve_app.platform.pronunciation import PronunciationDictionaries
from serve_app.platform.quota_alerts import QuotaAlerts
from serve_app.platform.tenants import TenantDirectory, TenantInfo, find_tenant
from serve_app.platform.usage import (
    Operation,
    UsageMeter,
    UsageRecord,
    UsageStatus,
    UsageSummary,
)
from serve_app.platform.usage_writer import UsageWriter
from serve_app.platform.voices import Consent, VoiceInfo, VoiceLibrary

logger = logging.getLogger("qtts.platform")

#: The tenant that owns everything when authentication is off (the open CPU demo).
OPEN_TENANT = "public"


def _keyring(args: PlatformArgs, db: Database) -> Keyring:
    if args.voice_encryption_keys is not None:
        return Keyring.parse(args.voice_encryption_keys.get_secret_value())
    if not db.is_sqlite:
        raise ConfigurationError(
            "VOICE_ENCRYPTION_KEYS must be set when the database is shared (not SQLite): every "
            "replica has to read voices sealed by every other"
        )
    path = args.resolved_data_dir() / "voice-encryption.key"
    logger.warning("no VOICE_ENCRYPTION_KEYS set: using the local development key in %s", path)
    return Keyring.development(path)


class Platform:
    def __init__(self, args: PlatformArgs, db: Database, blobs: BlobStore, keyring: Keyring,
                 limiter: Limiter, clone: CloneArgs | None = None):
        self.args = args
        self.clone = clone or CloneArgs()
        self.db = db
        self.blobs = blobs
        self.keyring = keyring
        self.limiter = limiter
        pepper = args.api_key_pepper.get_secret_value().encode() if args.api_key_pepper else b""
        self.tenants = TenantDirectory(db, args.default_limits)
        self.keys = ApiKeys(db, pepper, cache_s=args.auth_cache_s)
        self.usage = UsageMeter(db, args.billing.currency)
        self.usage_writer = UsageWriter(self.usage)  # the request path's rows: group commit
        self.voices = VoiceLibrary(db, blobs, keyring, args.voice_cache_size)
        self.statements = ConsentStatements(db, self.clone.statement_ttl_s)
        self.audit = AuditLog(db)
        self.dictionaries = PronunciationDictionaries(db, args.pronunciation)
        jobs = args.jobs
        webhook_lease_s = jobs.webhook_max_attempts * (jobs.webhook_timeout_s +
                                                       jobs.webhook_backoff_max_s)
        self.jobs = JobStore(
            db, blobs, keyring, lease_s=jobs.lease_s, max_attempts=jobs.max_attempts,
            max_text_chars=jobs.max_text_chars, webhook_lease_s=webhook_lease_s,
        )
        self.plans = PlanCatalog(db)
        self.invoices = Invoices(db, args.billing.currency)
        self.quota_alerts = QuotaAlerts(db, keyring, lease_s=webhook_lease_s)
        self._alert_sender = WebhookSender(  # the jobs' webhook settings, the same signature
            timeout_s=args.billing.quota_webhook_timeout_s, max_attempts=jobs.webhook_max_attempts,
            backoff_s=jobs.webhook_backoff_s, backoff_max_s=jobs.webhook_backoff_max_s,
            allow_private_hosts=jobs.webhook_allow_private_hosts)
        self._deliveries: set[asyncio.Task] = set()
        self.isolation: Isolation | None = None  # set by `open`: which guarantee holds
        self._open_principal: Principal | None = None
        # tenant name -> (when read, its keyless principal): trusted networks, Wyoming
        self._named_principals: dict[str, tuple[float, Principal]] = {}

    def __repr__(self) -> str:
        return (f"Platform(db={safe_url(self.db.url)!r}, blobs={self.blobs!r}, "
                f"limiter={self.limiter!r}, auth_enabled={self.args.auth_enabled})")

    @classmethod
    def open(cls, args: PlatformArgs, *, migrate: bool = False,
             clone: CloneArgs | None = None) -> Platform:
        """Connect every backend named in `args`; `migrate` brings the schema up to date
        first (the embedded SQLite default does it always: the demo needs nothing else).
        `clone`: the deployment's consent defaults (the request path's)."""
        db = Database(args.resolved_database_url(), args.resolved_admin_database_url())
        if migrate or db.is_sqlite:
            db.migrate()
        isolation = inspect_isolation(db.engine)
        if isolation.row_level_security and db.admin_engine is db.engine:
            raise ConfigurationError(
                f"DATABASE_URL connects as {isolation.role}, which row-level security binds: "
                "set ADMIN_DATABASE_URL to the tables' owner for the admin path and the work "
                "that crosses tenants (key lookup, job claims)")
        logger.info("tenant isolation: %s", isolation.detail)
        limiter = open_limiter(
            args.redis_url.get_secret_value() if args.redis_url else None,
            prefix=args.redis_key_prefix, lease_s=args.concurrency_lease_s,
        )
        platform = cls(args, db, open_blob_store(args.resolved_blob_store_url()),
                       _keyring(args, db), limiter, clone)
        platform.isolation = isolation
        if not args.auth_enabled:
            logger.warning("AUTHENTICATION IS OFF: every request acts as tenant %r", OPEN_TENANT)
        return platform

    def close(self) -> None:
        self.limiter.close()
        self.db.dispose()

    # -------------------------------------------------------------------- request path
    async def authenticate(self, headers: Mapping[str, str]) -> Principal:
        """The caller's principal (401 without a valid key, 403 for a disabled tenant); with
        authentication off, the open tenant's."""
        if not self.args.auth_enabled:
            return await asyncio.to_thread(self.open_principal)
        return await asyncio.to_thread(self.keys.authenticate, dict(headers))

    def open_principal(self) -> Principal:
        if self._open_principal is None:
            tenant = self.tenants.get_or_create(OPEN_TENANT)
            self._open_principal = self.tenant_principal(tenant)
        return self._open_principal

    def plan_and_limits(self, tenant_id: str) -> tuple[PlanGrant | None, TenantLimits]:
        """The tenant's plan version now and the limits it is held to (its own over its
        plan's)."""
        grant = self.plans.tenant_plan(tenant_id)
        return grant, effective_limits(self.tenants.get(tenant_id).limits, grant)

    def tenant_principal(self, tenant: TenantInfo, scopes: tuple[str, ...] = ()) -> Principal:
        """A keyless principal of `tenant` (the open demo, trusted networks, the handle API)
        with its plan and limits."""
        grant = self.plans.tenant_plan(tenant.id)
        return Principal(tenant.id, tenant.name, None, scopes,
                         effective_limits(tenant.limits, grant), grant)

    def is_trusted_network(self, host: str | None) -> bool:
        """Whether `host` (the TCP peer's address, never a forwarded header) lies in one of
        `trusted_networks`."""
        if not self.args.trusted_networks or not host:
            return False
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return False
        return any(address in network for network in self.args.trusted_networks)

    async def network_principal(self) -> Principal:
        """The principal of keyless seed calls from a trusted network: the tenant
        `trusted_network_tenant` (created on first use), limited to the seed's endpoints."""
        return await self.named_principal(self.args.trusted_network_tenant,
                                          "TRUSTED_NETWORK_TENANT", ("endpoint:synthesize",))

    async def named_principal(self, name: str, setting: str,
                              scopes: tuple[str, ...] = ()) -> Principal:
        """A keyless principal of the tenant `name` that a setting names (trusted networks'
        tenant, Wyoming's tenant), created on first use; its limits are re-read every
        `auth_cache_s`, as a key's are. A disabled tenant is refused (403 naming `setting`)."""
        cached = self._named_principals.get(name)
        if cached is not None and time.monotonic() - cached[0] < self.args.auth_cache_s:
            return cached[1]

        def load() -> Principal:
            tenant = self.tenants.get_or_create(name)
            if tenant.disabled:
                raise PermissionDenied(f"tenant {name!r} ({setting}) is disabled",
                                       code="tenant_disabled")
            return self.tenant_principal(tenant, scopes)

        principal = await asyncio.to_thread(load)
        self._named_principals[name] = (time.monotonic(), principal)
        return principal

    async def admit(self, principal: Principal, *, model: str | None, endpoint: str,
                    characters: int = 0) -> Admission:
        """Check the key's scopes (403) and the tenant's limits (429 with Retry-After and
        X-RateLimit-* headers); hold a slot until `finish`. Send `admission.headers` on the
        response."""
        principal.require(model=model, endpoint=endpoint)
        return await asyncio.to_thread(self.limiter.acquire, principal.tenant_id,
                                       principal.limits, characters=characters)

    async def finish(self, admission: Admission, principal: Principal, *, request_id: str,
                     model: str, endpoint: str, status: UsageStatus, characters: int = 0,
                     audio_seconds: float = 0.0, processing_ms: int = 0, streamed: bool = False,
                     voice: str | None = None) -> bool:
        """Settle the admission and record usage, once. A failed request is charged nothing;
        a cancelled stream is charged what was sent (pass those figures). Returns False if
        this request id was already recorded. The row shares its transaction with the rows
        of requests that finish meanwhile (`usage_writer`, group commit)."""
        if status == "failed":
            characters, audio_seconds = 0, 0.0
        record = UsageRecord(
            request_id=request_id, tenant_id=principal.tenant_id, api_key_id=principal.key_id,
            model=model, endpoint=endpoint, voice=voice, characters=characters,
            audio_seconds=audio_seconds, processing_ms=processing_ms, streamed=streamed,
            status=status,
        )

        written = await self.usage_writer.write(record, before=lambda: admission.settle(
            characters=characters, audio_seconds=audio_seconds))
        if written.alerts:
            self._spawn_delivery()
        return written.recorded

    def _record(self, record: UsageRecord) -> tuple[bool, int]:
        """Write a priced row (which opens the quota warnings it crosses): whether the row
        is new, how many warnings it opened."""
        recorded = self.usage.record_priced(record)
        return recorded.recorded, recorded.alerts

    def _spawn_delivery(self) -> None:
        """Deliver pending quota warnings in the background (from an event loop only)."""
        try:
            task = asyncio.get_running_loop().create_task(self.deliver_quota_alerts())
        except RuntimeError:  # no loop (a synchronous caller): the next delivery takes them
            return
        self._deliveries.add(task)
        task.add_done_callback(self._deliveries.discard)

    async def deliver_quota_alerts(self) -> int:
        """Send every pending quota warning (signed, retried like a job's webhook); how many
        were delivered."""
        delivered = 0
        while (alert := await asyncio.to_thread(self.quota_alerts.claim)) is not None:
            result = await self._alert_sender.deliver(
                alert.url, alert.secret, alert.event, alert.payload, f"quota-alert-{alert.id}")
            await asyncio.to_thread(self.quota_alerts.finished, alert.id, result.delivered,
                                    result.attempts, result.error)
            delivered += result.delivered
        return delivered

    def set_tenant_webhook(self, tenant: str, url: str, secret: str | None = None) -> dict:
        return self.quota_alerts.set_webhook(tenant, url, secret)

    def record_operation(self, principal: Principal, operation: Operation, *, request_id: str,
                         model: str, endpoint: str, voice: str | None = None) -> bool:
        """A priced row for an operation the plan charges by count (a saved voice, a job);
        quota warnings it opens are delivered by the next delivery (`deliver_quota_alerts`)."""
        return self._record(UsageRecord(
            request_id=request_id, tenant_id=principal.tenant_id, api_key_id=principal.key_id,
            model=model, endpoint=endpoint, voice=voice, operation=operation,
            status="ok"))[0]

    # -------------------------------------------------------------------------- voices
    async def create_clone_voice(self, principal: Principal, name: str, prompt: VoicePrompt, *,
                                 consent: Consent, reference_audio: bytes | None = None,
                                 language: str | None = None, description: str | None = None,
                                 request_id: str | None = None) -> VoiceInfo:
        principal.require(endpoint="voices", feature="clone")

        def work() -> VoiceInfo:
            self._require_voice_room(principal)
            info = self.voices.create_clone(
                principal.tenant_id, name, prompt, consent=consent,
                reference_audio=reference_audio, language=language, description=description,
                actor=_actor(principal, request_id))
            self.record_operation(principal, "voice", request_id=f"{info.id}:saved",
                                  model=VOICE_CLONE, endpoint="voices", voice=info.id)
            return info

        return await asyncio.to_thread(work)

    async def create_designed_voice(self, principal: Principal, name: str, prompt: VoicePrompt,
                                    *, description: str, sample_audio: bytes | None = None,
                                    language: str | None = None,
                                    request_id: str | None = None) -> VoiceInfo:
        principal.require(endpoint="voices", feature="saved_voices")

        def work() -> VoiceInfo:
            self._require_voice_room(principal)
            info = self.voices.create_design(
                principal.tenant_id, name, prompt, description=description,
                sample_audio=sample_audio, language=language,
                actor=_actor(principal, request_id))
            self.record_operation(principal, "voice", request_id=f"{info.id}:saved",
                                  model=VOICE_DESIGN, endpoint="voices", voice=info.id)
            return info

        return await asyncio.to_thread(work)

    def _require_voice_room(self, principal: Principal) -> None:
        """429 when the plan blocks past its included voice clones and they are used up."""
        self.usage.require_voice_room(principal.tenant_id, utcnow())

    async def list_voices(self, principal: Principal) -> list[VoiceInfo]:
        return await asyncio.to_thread(self.voices.list, principal.tenant_id)

    async def get_voice(self, principal: Principal, voice: str) -> VoiceInfo:
        return await asyncio.to_thread(self.voices.get, principal.tenant_id, voice)

    async def delete_voice(self, principal: Principal, voice: str,
                           request_id: str | None = None) -> VoiceInfo:
        return await asyncio.to_thread(self.voices.delete, principal.tenant_id, voice,
                                       _actor(principal, request_id))

    async def voice_prompt(self, principal: Principal, voice: str) -> VoicePrompt:
        """The saved clone prompt for synthesis (404 for another tenant's voice)."""
        return await asyncio.to_thread(self.voices.prompt, principal.tenant_id, voice)

    async def resolve_voice(self, principal: Principal, voice: str, *, audited: bool = False
                            ) -> tuple[str, VoicePrompt]:
        """A saved voice (its id or name) as its id and clone prompt, in one read (404 for
        another tenant's voice, as for a missing one); `audited`: a request uses it (the
        audit log gets a row)."""
        return await asyncio.to_thread(self.voices.resolve, principal.tenant_id, voice,
                                       _actor(principal) if audited else None)

    async def audit_events(self, principal: Principal, *, limit: int = 100,
                           voice_id: str | None = None, before: int | None = None
                           ) -> list[AuditEvent]:
        return await asyncio.to_thread(self.audit.list, principal.tenant_id, limit=limit,
                                       voice_id=voice_id, before=before)

    # ------------------------------------------------------------------------- consent
    async def consent_level(self, principal: Principal, use: ConsentUse) -> ConsentLevel:
        """The consent `use` needs for this tenant: its own policy, its plan's, the
        deployment's (serve_app.platform.consent.policy)."""
        tenant = await asyncio.to_thread(self.tenant_consent, principal.tenant_id)
        plan = principal.plan.terms.consent if principal.plan is not None else None
        return resolve_consent(use, tenant, plan, self.clone)

    def tenant_consent(self, tenant_id: str) -> ConsentPolicy | None:
        with self.db.transaction(tenant_id) as session:
            row = session.get(TenantConsentRow, tenant_id)
            return (ConsentPolicy(voices=row.voices, one_shot=row.one_shot)  # type: ignore[arg-type]
                    if row is not None else None)

    def set_tenant_consent(self, tenant: str, policy: ConsentPolicy) -> dict:
        """A tenant's own consent policy (admin); levels left null are inherited."""
        with self.db.admin_transaction() as session:
            row_tenant = find_tenant(session, tenant)
            row = session.get(TenantConsentRow, row_tenant.id)
            if row is None:
                row = TenantConsentRow(tenant_id=row_tenant.id)
                session.add(row)
            row.voices, row.one_shot, row.updated_at = policy.voices, policy.one_shot, utcnow()
            tenant_id, name = row_tenant.id, row_tenant.name
        return {"tenant": tenant_id, "name": name, "consent": policy.model_dump(),
                "defaults": {"voices": self.clone.consent,
                             "one_shot": self.clone.consent_one_shot}}

    async def issue_statement(self, principal: Principal, language: str) -> Statement:
        return await asyncio.to_thread(self.statements.issue, principal.tenant_id, language)

    async def check_statement(self, principal: Principal, code: str) -> Statement:
        return await asyncio.to_thread(self.statements.check, principal.tenant_id, code)

    async def redeem_statement(self, principal: Principal, statement: Statement) -> None:
        await asyncio.to_thread(self.statements.redeem, principal.tenant_id, statement)

    # ---------------------------------------------------------------------------- jobs
    async def submit_job(self, principal: Principal, request: JobRequest, *,
                         webhook_url: str | None = None,
                         webhook_secret: str | None = None) -> JobTicket:
        principal.require(model=request.model, endpoint="jobs")

        def work() -> JobTicket:
            ticket = self.jobs.submit(principal.tenant_id, request, api_key_id=principal.key_id,
                                      webhook_url=webhook_url, webhook_secret=webhook_secret)
            self.record_operation(principal, "job", request_id=f"{ticket.id}:submitted",
                                  model=request.model, endpoint="jobs")
            return ticket

        return await asyncio.to_thread(work)

    async def job_status(self, principal: Principal, job_id: str) -> JobStatus:
        return await asyncio.to_thread(self.jobs.get, principal.tenant_id, job_id)

    async def list_jobs(self, principal: Principal, limit: int = 100) -> list[JobStatus]:
        return await asyncio.to_thread(self.jobs.list, principal.tenant_id, limit)

    async def job_result(self, principal: Principal, job_id: str) -> tuple[bytes, str]:
        return await asyncio.to_thread(self.jobs.result, principal.tenant_id, job_id)

    async def job_words(self, principal: Principal, job_id: str) -> bytes:
        """A finished job's word timestamps (JSON, serve_app.protocol.timestamps)."""
        return await asyncio.to_thread(self.jobs.words, principal.tenant_id, job_id)

    def job_runner(self, synthesize: Synthesize, *, encode: Encode = render_output,
                   mark: bool | Mark = True, timings: Timings | None = None,
                   segment: Segmenter | None = None) -> JobRunner:
        """A runner over this platform's queue; call `.start()` inside the event loop. It
        also delivers pending quota warnings (any replica's, e.g. of one that died)."""
        return JobRunner(self.jobs, synthesize, self.args.jobs, encode=encode, mark=mark,
                         timings=timings, sweep=self.deliver_quota_alerts,
                         **({"segment": segment} if segment is not None else {}))

    # ------------------------------------------------------------------------ invoices
    async def list_invoices(self, principal: Principal) -> list[Invoice]:
        return await asyncio.to_thread(self.invoices.list, principal.tenant_id)

    async def get_invoice(self, principal: Principal, invoice_id: str) -> Invoice:
        return await asyncio.to_thread(self.invoices.get, principal.tenant_id, invoice_id)

    # ---------------------------------------------------------------------- admin side
    async def usage_summary(self, tenant_id: str, period: str = "month") -> UsageSummary:
        return await asyncio.to_thread(self.usage.summary, tenant_id, period)

    def rotate_voice_key(self) -> dict[str, int]:
        """Re-seal everything sealed with an older key under the newest one; how many of
        each kind were (voices, and the job store's webhook secrets, results, checkpoints)."""
        return {"voices": self.voices.reencrypt(), **self.jobs.reencrypt()}


def _actor(principal: Principal, request_id: str | None = None) -> Actor:
    return Actor(api_key_id=principal.key_id, request_id=request_id)
