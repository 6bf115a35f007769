"""The platform on the request path: authentication, limits, usage, saved voices, job runner.

The ingress replica holds one `Platform` (serve_app.platform) inside a `TenantService`, the
`SynthesisService` with every synthesis metered:

- `TenancyMiddleware` authenticates every request except the public ones (`PUBLIC_PATHS`;
  /admin has its own ADMIN_TOKEN guard): `Authorization: Bearer <key>` or `X-API-Key`,
  401/403 as the platform says. The request's principal and endpoint go into a context
  variable; the X-RateLimit-* headers of its admission are added to the response.
- `TenantService` admits each synthesis before it runs (403 scope, 429 limits + Retry-After)
  and records one usage row after it (in a `finally`): ok -> charged what was produced,
  failed -> charged nothing, a stream the client dropped -> charged what was sent.
- A `speaker` / `voice` that is a saved voice id (`voice_...`) synthesizes with VoiceClone
  from the stored clone prompt, on every surface (seed, OpenAI, handle API, streams, jobs).
- Handle API callers are trusted in-cluster code (Ray access is code execution): they act as
  the tenant `platform.handle_tenant` (created on first use), metered like everyone else.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from ray.serve.handle import DeploymentHandle

from deployments.audio import RenderOptions
from deployments.engine.types import SynthesisRequest, SynthesisResult
from serve_app import catalog
from serve_app.args import CUSTOM_VOICE, VOICE_CLONE, VOICE_DESIGN, AppArgs
from serve_app.audio_stream import AudioStream, check_stream_options
from serve_app.cache import LRUCache
from serve_app.errors import ApiError, invalid
from serve_app.http_edge import route_path
from serve_app.platform.config import TenantLimits
from serve_app.platform.errors import NotFound, PlatformError
from serve_app.platform.jobs.runner import JobRunner, SegmentAudio
from serve_app.platform.jobs.store import ClaimedJob
from serve_app.platform.keys import Principal
from serve_app.platform.limits import Admission
from serve_app.platform.service import Platform
from serve_app.platform.voices import is_voice_id
from serve_app.protocol.native import (
    AudioOutput,
    AudioStreamChunk,
    CustomVoiceInput,
    VoiceCloneInput,
    VoiceDesignInput,
)
from serve_app.synthesis_service import SynthesisService

logger = logging.getLogger("qtts.tenancy")

#: Open without a key: the service root, API docs, probes and the seed's health check.
PUBLIC_PATHS = frozenset({
    "/", "/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json", "/livez", "/readyz",
    "/api/health", "/metrics",
    "/v1/audio/models", "/v1/audio/voices",  # Open WebUI lists without a key (routes/clients.py)
    "/playground", "/playground/playground.js", "/playground/playground.css",
})

#: Path prefix -> the endpoint family a key can be scoped to (serve_app.platform.keys).
_ENDPOINTS = (
    ("/api/tts/", "synthesize"), ("/v1/audio/speech", "speech"), ("/v1/audio/design", "design"),
    ("/v1/audio/clone", "clone"), ("/v1/voices", "voices"), ("/v1/jobs", "jobs"),
    ("/v1/usage", "usage"),
)


def endpoint_of(path: str) -> str | None:
    for prefix, name in _ENDPOINTS:
        if path.startswith(prefix):
            return name
    return None


def is_public(path: str) -> bool:
    return path in PUBLIC_PATHS or path.startswith("/admin/") or path == "/admin"


def api_error(exc: PlatformError) -> ApiError:
    return ApiError(exc.status, exc.code, exc.message, exc.param, exc.headers)


# ------------------------------------------------------------------------ request context
@dataclass
class RequestTenancy:
    """Who is calling and what the response should carry (X-RateLimit-*)."""

    principal: Principal | None
    endpoint: str
    headers: dict[str, str] = field(default_factory=dict)


_current: contextvars.ContextVar[RequestTenancy | None] = contextvars.ContextVar(
    "qtts_tenancy", default=None)


def current() -> RequestTenancy | None:
    return _current.get()


@contextlib.contextmanager
def acting_as(principal: Principal, endpoint: str):
    """Run the block as `principal` calling `endpoint` (WebSocket sessions, which
    TenancyMiddleware passes through, authenticate themselves and then use this)."""
    token = _current.set(RequestTenancy(principal, endpoint))
    try:
        yield
    finally:
        _current.reset(token)


class _ReplicaPlatform:
    """The TenantService of this replica (one process per replica, as routes.common)."""

    current: TenantService | None = None


def tenant_service() -> TenantService:
    if _ReplicaPlatform.current is None:
        raise RuntimeError("no TenantService bound in this process")
    return _ReplicaPlatform.current


def platform() -> Platform:
    return tenant_service().platform


def principal_of(request: Any = None) -> Principal:
    """The authenticated caller of the current HTTP request (set by TenancyMiddleware)."""
    ctx = current()
    if ctx is None or ctx.principal is None:
        raise ApiError(401, "missing_api_key", "an API key is required")
    try:
        ctx.principal.require(endpoint=ctx.endpoint)  # a key scoped to other endpoints: 403
    except PlatformError as exc:
        raise api_error(exc) from None
    return ctx.principal


async def call_platform(coro: Awaitable[Any]) -> Any:
    try:
        return await coro
    except PlatformError as exc:
        raise api_error(exc) from None


async def saved_voice(name: str) -> str | None:
    """The id of the caller's saved voice `name` (`voice_...` or its name), or None when it
    names a preset speaker or no saved voice (then the preset rules apply)."""
    svc = tenant_service()
    if not name:
        return None
    if not is_voice_id(name):
        if name.strip().lower() in catalog.OPENAI_VOICES:
            return None
        if CUSTOM_VOICE in svc.deployed_models:
            info = await svc.model_info(CUSTOM_VOICE)
            with contextlib.suppress(ApiError):
                catalog.resolve_speaker(name, info)
                return None
    return await svc.resolve_saved_voice(name)


#: The seed service's routes: the only ones a trusted network may call without a key.
SEED_PREFIX = "/api/"


def _keyless_seed_call(path: str, headers: dict[str, str]) -> bool:
    """A call to a seed route with no credentials at all (a wrong key is still a 401)."""
    sent = {k.lower() for k in headers}
    return path.startswith(SEED_PREFIX) and not ({"authorization", "x-api-key"} & sent)


class TenancyMiddleware:
    """Pure ASGI: authenticate, expose the principal, add X-RateLimit-* to the response."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        from serve_app.routes.common import _ReplicaService

        svc = _ReplicaService.current
        if not isinstance(svc, TenantService):  # a bare SynthesisService (Ray-free route tests):
            return await self.app(scope, receive, send)  # the ingress always binds a tenant one
        svc.ensure_runner()
        path = route_path(scope)
        if is_public(path) or scope.get("method") == "OPTIONS":
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        try:
            if _keyless_seed_call(path, headers) and svc.platform.is_trusted_network(
                    (scope.get("client") or (None,))[0]):
                principal = await svc.platform.network_principal()
            else:
                principal = await svc.platform.authenticate(headers)
        except PlatformError as exc:
            raise api_error(exc) from None  # rendered by the HTTP edge (serve_app.http_edge)
        ctx = RequestTenancy(principal, endpoint_of(path) or "synthesize")
        token = _current.set(ctx)

        async def send_with_limits(message):
            if message["type"] == "http.response.start" and ctx.headers:
                present = {k.lower() for k, _ in message.get("headers", [])}
                extra = [(k.lower().encode("latin-1"), v.encode("latin-1"))
                         for k, v in ctx.headers.items() if k.lower().encode() not in present]
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        try:
            await self.app(scope, receive, send_with_limits)
        finally:
            _current.reset(token)


# ---------------------------------------------------------------------------- the service
class TenantService(SynthesisService):
    """SynthesisService with authentication context, limits, usage metering and saved voices."""

    def __init__(self, args: AppArgs, models: dict[str, DeploymentHandle],
                 audio: DeploymentHandle, platform: Platform | None = None):
        super().__init__(args, models, audio)
        self.platform = platform or Platform.open(args.platform)
        logger.info("platform: %r", self.platform)
        self._trusted: Principal | None = None
        self._runner: JobRunner | None = None
        self._background: set[asyncio.Task] = set()
        self._job_principals: LRUCache[Principal] = LRUCache(256)  # "<job id>:<attempt>"
        _ReplicaPlatform.current = self

    # ------------------------------------------------------------------ who is calling
    async def caller(self) -> RequestTenancy:
        """The HTTP request's context, or (handle API) the trusted in-cluster tenant's."""
        ctx = current()
        if ctx is not None and ctx.principal is not None:
            return ctx
        return RequestTenancy(await self.trusted_principal(), "synthesize")

    async def trusted_principal(self) -> Principal:
        if not self.args.platform.auth_enabled:
            return await asyncio.to_thread(self.platform.open_principal)
        if self._trusted is None:
            name = self.args.platform.handle_tenant

            def get_or_create():
                tenants = self.platform.tenants
                try:
                    info = tenants.get(name)
                except NotFound:
                    try:
                        info = tenants.create(name)
                    except PlatformError:  # another replica created it first
                        info = tenants.get(name)
                return Principal(info.id, info.name, None, (), info.limits)

            self._trusted = await asyncio.to_thread(get_or_create)
        return self._trusted

    async def cache_scope(self) -> str:
        """Results are cached per tenant (serve_app.synthesis_service.SynthesisService.cache_scope)."""
        return (await self.caller()).principal.tenant_id

    # ------------------------------------------------------------------------ metering
    async def admit(self, ctx: RequestTenancy, model: str, characters: int,
                    endpoint: str | None = None) -> Admission:
        try:
            admission = await self.platform.admit(
                ctx.principal, model=model, endpoint=endpoint or ctx.endpoint,
                characters=characters)
        except PlatformError as exc:
            raise api_error(exc) from None
        ctx.headers.update(admission.headers)
        return admission

    async def settle(self, admission: Admission, ctx: RequestTenancy, *, request_id: str,
                     model: str, status: str, characters: int = 0, audio_seconds: float = 0.0,
                     started: float, streamed: bool = False, voice: str | None = None,
                     endpoint: str | None = None) -> None:
        try:
            await self.platform.finish(
                admission, ctx.principal, request_id=request_id, model=model,
                endpoint=endpoint or ctx.endpoint, status=status, characters=characters,
                audio_seconds=audio_seconds, streamed=streamed, voice=voice,
                processing_ms=int((time.perf_counter() - started) * 1000))
        except Exception:  # noqa: BLE001 - never fail a delivered response on metering
            logger.exception("request %s: recording usage failed", request_id)

    async def metered(self, model: str, text: str, request_id: str,
                      call: Callable[[], Awaitable[AudioOutput]], *, voice: str | None = None,
                      endpoint: str | None = None) -> AudioOutput:
        ctx = await self.caller()
        admission = await self.admit(ctx, model, len(text), endpoint)
        started = time.perf_counter()
        status, out = "failed", None
        try:
            out = await call()
            status = "ok"
            return out
        finally:
            done = self.settle(
                admission, ctx, request_id=request_id, model=model, status=status,
                characters=len(text) if out else 0,
                audio_seconds=out.duration_seconds if out else 0.0, started=started,
                voice=voice, endpoint=endpoint)
            self._detach(done)  # survives a cancelled request

    def _detach(self, coro: Awaitable[Any]) -> asyncio.Task:
        task = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return task

    # ---------------------------------------------------------------------- operations
    async def custom_voice(self, inp: CustomVoiceInput, request_id: str) -> AudioOutput:
        if is_voice_id(inp.speaker):
            return await self.saved_voice(inp, request_id)
        parent = super().custom_voice
        return await self.metered(CUSTOM_VOICE, inp.text, request_id,
                                  lambda: parent(inp, request_id))

    async def voice_design(self, inp: VoiceDesignInput, request_id: str) -> AudioOutput:
        parent = super().voice_design
        return await self.metered(VOICE_DESIGN, inp.text, request_id,
                                  lambda: parent(inp, request_id))

    async def voice_clone(self, inp: VoiceCloneInput, request_id: str) -> AudioOutput:
        parent = super().voice_clone
        return await self.metered(VOICE_CLONE, inp.text, request_id,
                                  lambda: parent(inp, request_id))

    async def saved_voice(self, inp: CustomVoiceInput, request_id: str) -> AudioOutput:
        """Synthesize with a saved voice (`speaker` = its id): VoiceClone from the stored
        prompt, with this tenant's voice only (another tenant's is 404)."""
        ctx = await self.caller()

        async def call() -> AudioOutput:
            info, request = await self._saved_voice_request(ctx.principal, inp)

            async def synthesize() -> SynthesisResult:
                return await self.handle(VOICE_CLONE).synthesize.remote(request)

            return await self._run(VOICE_CLONE, info, request, inp.output, request_id,
                                   synthesize, {"voice": inp.speaker})

        return await self.metered(VOICE_CLONE, inp.text, request_id, call, voice=inp.speaker)

    async def _saved_voice_request(self, principal: Principal, inp: CustomVoiceInput):
        prompt = await call_platform(self.platform.voice_prompt(principal, inp.speaker))
        info = await self.model_info(VOICE_CLONE)
        return info, SynthesisRequest(
            text=self._text(inp.text), language=catalog.resolve_language(inp.language, info),
            voice_prompt=prompt, seed=inp.seed, max_new_tokens=inp.max_new_tokens,
            min_frames=inp.min_frames)

    async def resolve_saved_voice(self, name: str) -> str | None:
        """The id of the caller's saved voice `name` (an id or a voice name), or None."""
        if not name:
            return None
        ctx = await self.caller()
        try:
            return (await self.platform.get_voice(ctx.principal, name)).id
        except NotFound:
            if is_voice_id(name):
                raise api_error(NotFound(f"no voice {name!r}", param="voice")) from None
            return None
        except PlatformError as exc:
            raise api_error(exc) from None

    # ----------------------------------------------------------------------- streaming
    async def stream(self, inp, request_id: str) -> AudioStream:
        if isinstance(inp, CustomVoiceInput):
            model = VOICE_CLONE if is_voice_id(inp.speaker) else CUSTOM_VOICE
        else:
            model = VOICE_DESIGN if isinstance(inp, VoiceDesignInput) else VOICE_CLONE
        ctx = await self.caller()
        admission = await self.admit(ctx, model, len(inp.text))
        started = time.perf_counter()
        voice = inp.speaker if model == VOICE_CLONE and isinstance(inp, CustomVoiceInput) else None
        try:
            if voice is not None:
                check_stream_options(inp.output)
                _, request = await self._saved_voice_request(ctx.principal, inp)

                async def start():
                    return self.handle(VOICE_CLONE).options(stream=True).stream.remote(request)

                opened = await self._open_stream(start, inp.output, request_id, VOICE_CLONE,
                                                 request)
            else:
                opened = await super().stream(inp, request_id)
        except BaseException:
            self._detach(self.settle(admission, ctx, request_id=request_id, model=model,
                                     status="failed", started=started, streamed=True,
                                     voice=voice))
            raise

        async def on_end(status: str, audio_seconds: float) -> None:
            await self.settle(admission, ctx, request_id=request_id, model=model,
                              status=status, characters=len(inp.text) if audio_seconds else 0,
                              audio_seconds=audio_seconds, started=started, streamed=True,
                              voice=voice)

        return MeteredStream(opened, admission, on_end, self._detach,
                             self.args.platform.concurrency_lease_s / 4)

    # ---------------------------------------------------------------------------- jobs
    def ensure_runner(self) -> None:
        """Start this replica's job runner (inside the replica's event loop, on first use)."""
        if self._runner is None:
            self._runner = self.platform.job_runner(self.synthesize_segment)
            self._runner.start()

    def wake_runner(self) -> None:
        self.ensure_runner()
        self._runner.wake()

    async def synthesize_segment(self, job: ClaimedJob, segment: str, index: int) -> SegmentAudio:
        """One segment of a job, metered as its own usage row: `<job id>:<index>` once it
        succeeds (a usage id is recorded once, so a failed attempt is recorded under its own
        id and never blocks the bill of the attempt that later succeeds); quotas (characters,
        audio seconds) apply, the per-request limits were applied when the job was submitted.
        The tenant is read once per job attempt, not once per segment."""
        params = job.request.params
        model = job.request.model
        principal = await self._job_principal(job)
        ctx = RequestTenancy(principal, "jobs")
        admission = await self.admit(ctx, model, len(segment))
        started = time.perf_counter()
        status, result = "failed", None
        try:
            request = await self._job_request(principal, model, params, segment)
            result = await asyncio.wait_for(self.handle(model).synthesize.remote(request),
                                            self.args.ingress.request_timeout_s)
            status = "ok"
            return SegmentAudio(np.asarray(result.audio, dtype=np.float32), result.sample_rate)
        finally:
            usage_id = f"{job.id}:{index}" if status == "ok" else f"{job.id}:{index}:a{job.attempt}"
            await self.settle(admission, ctx, request_id=usage_id, model=model, status=status, characters=len(segment) if result else 0,
                              audio_seconds=result.duration_seconds if result else 0.0,
                              started=started, voice=params.get("voice"))

    async def _job_principal(self, job: ClaimedJob) -> Principal:
        """The job's tenant with its quotas (no per-request limits), read once per attempt."""
        key = f"{job.id}:{job.attempt}"
        principal = self._job_principals.get(key)
        if principal is None:
            limits = await asyncio.to_thread(
                lambda: self.platform.tenants.get(job.tenant_id).limits)
            quota = TenantLimits(characters_per_period=limits.characters_per_period,
                                 audio_seconds_per_period=limits.audio_seconds_per_period,
                                 period=limits.period)
            principal = Principal(job.tenant_id, "", job.api_key_id, (), quota)
            self._job_principals.put(key, principal)
        return principal

    async def _job_request(self, principal: Principal, model: str, params: dict,
                           text: str) -> SynthesisRequest:
        info = await self.model_info(model)
        common = {"text": text, "language": catalog.resolve_language(params.get("language") or "auto", info),
                  "seed": params.get("seed"), "max_new_tokens": params.get("max_new_tokens")}
        if model == CUSTOM_VOICE:
            return SynthesisRequest(**common, speaker=catalog.resolve_speaker(
                params.get("speaker"), info, openai_names=True),
                instruct=params.get("instruct") or None)
        if model == VOICE_DESIGN:
            return SynthesisRequest(**common, instruct=params["description"])
        prompt = await self.platform.voice_prompt(principal, params["voice"])
        return SynthesisRequest(**common, voice_prompt=prompt)

    # ----------------------------------------------------------------- voice creation
    async def build_clone_prompt(self, reference_audio: bytes, ref_text: str | None,
                                 x_vector_only: bool):
        self._check_upload(len(reference_audio))
        reference = await self._audio.prepare_reference.remote(reference_audio)
        return await self.handle(VOICE_CLONE).voice_prompt.remote(reference, ref_text,
                                                                  x_vector_only)

    async def design_sample(self, description: str, text: str, language: str,
                            seed: int | None) -> tuple[bytes, float]:
        """A WAV sample of a designed voice, long enough to clone from (a few seeds are
        tried: a sample shorter than the reference minimum cannot be cloned)."""
        from deployments.audio import render

        info = await self.model_info(VOICE_DESIGN)
        minimum = self.args.audio.min_reference_seconds
        base = 0 if seed is None else seed
        for attempt in range(4):
            request = SynthesisRequest(text=self._text(text),
                                       language=catalog.resolve_language(language, info),
                                       instruct=description, seed=base + attempt)
            result: SynthesisResult = await self.handle(VOICE_DESIGN).synthesize.remote(request)
            if result.duration_seconds >= minimum:
                wav = render(result.audio, result.sample_rate, RenderOptions(format="wav"))
                return wav.data, result.duration_seconds
        raise invalid("sample_text", "the designed sample came out shorter than "
                      f"{minimum} s; use a longer sample_text")


class MeteredStream:
    """An AudioStream whose end settles its admission and records usage: completed -> ok,
    a failure -> failed (charged nothing), the consumer gone -> cancelled (charged what was
    sent). Long streams renew their concurrency lease."""

    def __init__(self, inner: AudioStream, admission: Admission,
                 on_end: Callable[[str, float], Awaitable[None]],
                 detach: Callable[[Awaitable[Any]], Any], renew_every_s: float):
        self._inner = inner
        self._admission = admission
        self._on_end = on_end
        self._detach = detach
        self._renew_every_s = renew_every_s
        self._ended = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def _end(self, status: str, seconds: float) -> None:
        if not self._ended:
            self._ended = True
            self._detach(self._on_end(status, seconds))  # detached: survives cancellation

    async def chunks(self) -> AsyncIterator[AudioStreamChunk]:
        sent, status = 0.0, "cancelled"
        renewed = time.monotonic()
        try:
            async with contextlib.aclosing(self._inner.chunks()) as pieces:
                async for piece in pieces:
                    yield piece
                    sent = piece.duration_seconds
                    if piece.final:
                        status = "ok"
                    if time.monotonic() - renewed > self._renew_every_s:
                        renewed = time.monotonic()
                        self._detach(asyncio.to_thread(self._admission.renew))
        except Exception:
            status = "failed"
            raise
        finally:
            self._end(status, sent if status != "failed" else 0.0)

    async def aclose(self) -> None:
        self._end("failed", 0.0)
        await self._inner.aclose()
