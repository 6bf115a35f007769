"""Admission: who is calling, whether they may, and the usage row each call leaves.

`TenantAdmission` is the component the ingress composes the SynthesisService, the auth
middleware, the routes and the job runner with; it holds the replica's `Platform`:

- who: the HTTP request's `Caller` (set by serve_app.edge.auth_middleware), or for callers outside
  any request the trusted in-cluster tenant (handle API: Ray access is code execution, so
  they act as `platform.handle_tenant`, created on first use) or a job's tenant (read once
  per job attempt, with its quotas and no per-request limits);
- may they: `admit` checks the key's scopes (403) and the tenant's limits (429 with
  Retry-After), and puts the X-RateLimit-* headers on the caller's answer;
- the record: `settle` frees the admission and writes one usage row; it never fails a
  delivered answer. serve_app.synthesis.metering wraps results and streams with admit and settle.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping

from serve_app.edge.api_errors import ApiError
from serve_app.edge.path_table import keyless_seed_call, sends_credentials
from serve_app.edge.request_context import Caller, current_caller
from serve_app.platform.jobs.store import ClaimedJob
from serve_app.platform.keys import Principal
from serve_app.platform.limits import Admission
from serve_app.platform.service import Platform
from serve_app.platform.usage import UsageStatus
from serve_app.synthesis.cache import LRUCache

logger = logging.getLogger("qtts.admission")

#: The endpoint family of handle API callers (their calls are syntheses).
HANDLE_ENDPOINT = "synthesize"
JOBS_ENDPOINT = "jobs"


class TenantAdmission:
    def __init__(self, platform: Platform):
        self.platform = platform
        self._trusted: Principal | None = None
        self._job_principals: LRUCache[Principal] = LRUCache(256)  # "<job id>:<attempt>"

    @property
    def auth_enabled(self) -> bool:
        return self.platform.args.auth_enabled

    # --------------------------------------------------------------------- who is calling
    async def authenticate(self, path: str, headers: Mapping[str, str],
                           client_host: str | None) -> Principal:
        """The principal of an HTTP request to `path` (401/403 raised as PlatformError): a
        keyless seed call from a trusted network acts as that network's tenant."""
        if keyless_seed_call(path, headers) and self.platform.is_trusted_network(client_host):
            return await self.platform.network_principal()
        return await self.platform.authenticate(headers)

    async def optional_principal(self, headers: Mapping[str, str]) -> Principal | None:
        """The caller of a public route when it sent credentials (a wrong key: 401), else
        None; with authentication off, the open tenant."""
        if not self.auth_enabled or sends_credentials(headers):
            return await self.platform.authenticate(headers)
        return None

    def request_caller(self) -> Caller:
        """The authenticated caller of the current HTTP request: 401 when there is none, 403
        when its key is scoped to other endpoints."""
        caller = current_caller()
        if caller is None:
            raise ApiError(401, "missing_api_key", "an API key is required")
        caller.principal.require(endpoint=caller.endpoint)
        return caller

    async def caller(self) -> Caller:
        """The current request's caller, or (handle API) the trusted in-cluster tenant."""
        return current_caller() or Caller(await self.trusted_principal(), HANDLE_ENDPOINT)

    async def trusted_principal(self) -> Principal:
        if not self.auth_enabled:
            return await asyncio.to_thread(self.platform.open_principal)
        if self._trusted is None:
            info = await asyncio.to_thread(self.platform.tenants.get_or_create,
                                           self.platform.args.handle_tenant)
            self._trusted = await asyncio.to_thread(self.platform.tenant_principal, info)
        return self._trusted

    async def job_caller(self, job: ClaimedJob) -> Caller:
        """A job's tenant with its quotas (characters, audio seconds) and none of the
        per-request limits, which applied when the job was submitted; read once per attempt."""
        key = f"{job.id}:{job.attempt}"
        principal = self._job_principals.get(key)
        if principal is None:
            _, limits = await asyncio.to_thread(self.platform.plan_and_limits, job.tenant_id)
            quota = limits.model_copy(update={"requests_per_minute": None,
                                              "max_concurrent": None})
            principal = Principal(job.tenant_id, "", job.api_key_id, (), quota)
            self._job_principals.put(key, principal)
        return Caller(principal, JOBS_ENDPOINT)

    async def cache_scope(self) -> str:
        """Results are cached per tenant (SynthesisService's result cache)."""
        return (await self.caller()).principal.tenant_id

    # ------------------------------------------------------------------ limits and usage
    async def admit(self, caller: Caller, model: str | None, characters: int) -> Admission:
        """Hold a place within the caller's limits (403 scope, 429 + Retry-After); the
        caller's answer carries the X-RateLimit-* headers."""
        admission = await self.platform.admit(caller.principal, model=model,
                                              endpoint=caller.endpoint, characters=characters)
        caller.headers.update(admission.headers)
        return admission

    async def settle(self, admission: Admission, caller: Caller, *, request_id: str,
                     model: str, status: UsageStatus, started: float, characters: int = 0,
                     audio_seconds: float = 0.0, streamed: bool = False,
                     voice: str | None = None) -> None:
        """Free the admission and record one usage row: ok -> charged what was produced,
        failed -> nothing, cancelled -> what was sent."""
        try:
            await self.platform.finish(
                admission, caller.principal, request_id=request_id, model=model,
                endpoint=caller.endpoint, status=status, characters=characters,
                audio_seconds=audio_seconds, streamed=streamed, voice=voice,
                processing_ms=int((time.perf_counter() - started) * 1000))
        except Exception:  # noqa: BLE001 - never fail a delivered response on metering
            logger.exception("request %s: recording usage failed", request_id)
