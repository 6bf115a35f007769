"""The job runner: an asyncio loop that claims jobs, synthesizes them segment by segment,
joins and encodes the audio, records the result once and calls the webhook.

The synthesis itself is a callable handed in by the caller (the ingress passes one that
synthesizes each segment through its SynthesisService, serve_app.synthesis.job_synthesis), so this
module knows nothing about Ray:

    async def synthesize(job: ClaimedJob, segment: str, index: int) -> SegmentAudio

Any number of runners (one per ingress replica) share the queue through the database; a
claim picks fairly across tenants (`JobStore.claim`, capped by `max_running_per_tenant`). A
runner that dies leaves its lease to expire; another one takes the job up again and
continues at the first segment without a checkpoint, so `synthesize` is called once per
segment index over the job's whole life (barring a lost checkpoint blob), which is what
keeps per-segment metering (`<job id>:<index>`) billed once.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import inspect
import logging
import os
import socket
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import numpy as np

from deployments.audio.marking import AIMark, embed_mark
from serve_app.platform.config import JobArgs
from serve_app.platform.crypto import DecryptionError
from serve_app.platform.errors import NotFound, PlatformError
from serve_app.platform.jobs.audio import crossfade_join, segment_starts
from serve_app.platform.jobs.store import ClaimedJob, JobRequest, JobStore, PendingWebhook
from serve_app.platform.jobs.text import segment_text
from serve_app.platform.jobs.webhooks import WebhookSender

logger = logging.getLogger("qtts.platform.jobs")


@dataclass(frozen=True)
class SegmentAudio:
    audio: np.ndarray  # float32 mono
    sample_rate: int


@dataclass(frozen=True)
class EncodedAudio:
    data: bytes
    content_type: str
    extension: str
    audio_seconds: float


Synthesize = Callable[[ClaimedJob, str, int], Awaitable[SegmentAudio]]
#: A finished job's word timestamps, stored with its result: (job, its segments' text, their
#: audio, where each starts in the joined audio in seconds, the result's seconds per joined
#: second) -> JSON, or None when the job did not ask for them.
Timings = Callable[[ClaimedJob, list[str], list[SegmentAudio], list[float], float],
                   Awaitable[bytes | None]]
#: Joined audio -> the job's result: a plain function (run in a worker thread) or a coroutine
#: function (the ingress renders through its SynthesisService).
Encode = Callable[[np.ndarray, int, dict], EncodedAudio | Awaitable[EncodedAudio]]
#: A job's text in segments of about `segment_chars` characters (SSML jobs: the synthesis
#: layer's, which cuts the parsed document).
Segmenter = Callable[[JobRequest, int], list[str]]


def plain_segments(request: JobRequest, segment_chars: int) -> list[str]:
    return segment_text(request.text, segment_chars)


def render_output(audio: np.ndarray, sample_rate: int, output: dict) -> EncodedAudio:
    """Default encoder: the project's audio library with the job's RenderOptions."""
    from deployments.audio import RenderOptions, render

    rendered = render(audio, sample_rate, RenderOptions.model_validate(output))
    return EncodedAudio(rendered.data, rendered.content_type, rendered.format.value,
                        rendered.duration_seconds)


#: A finished file, its format and its mark -> the file marked (and signed, where it can be).
Mark = Callable[[bytes, str, AIMark], Awaitable[bytes]]


async def _embed(data: bytes, fmt: str, mark: AIMark) -> bytes:
    return embed_mark(data, fmt, mark)


class JobRunner:
    def __init__(self, store: JobStore, synthesize: Synthesize, args: JobArgs, *,
                 encode: Encode = render_output, webhooks: WebhookSender | None = None,
                 mark: bool | Mark = True, timings: Timings | None = None,
                 owner: str | None = None,
                 sweep: Callable[[], Awaitable[object]] | None = None,
                 segment: Segmenter = plain_segments):
        """`sweep`: more due work the loop starts when it has a free slot, one at a time (the
        platform's pending quota warnings)."""
        self.store = store
        self._sweep = sweep
        self._segment = segment
        self._sweeping: asyncio.Task | None = None
        self.args = args
        self._synthesize = synthesize
        self._encode = encode
        # the result marked as AI-generated: in its metadata (deployments.audio.marking), or by
        # a coroutine that also signs it (the ingress's SynthesisService.mark)
        self._mark: Mark | None = (_embed if mark is True else mark) or None
        self._timings = timings
        self.webhooks = webhooks or WebhookSender(
            timeout_s=args.webhook_timeout_s, max_attempts=args.webhook_max_attempts,
            backoff_s=args.webhook_backoff_s, backoff_max_s=args.webhook_backoff_max_s,
            allow_private_hosts=args.webhook_allow_private_hosts,
        )
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._task: asyncio.Task | None = None
        self._running: set[asyncio.Task] = set()
        self._wake = asyncio.Event()

    # --------------------------------------------------------------------- lifecycle
    def start(self) -> asyncio.Task:
        """Run the loop in the background of the current event loop."""
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._loop(), name=f"job-runner {self.owner}")
        return self._task

    def wake(self) -> None:
        """Look for work now (call after a submit on this replica)."""
        self._wake.set()

    async def stop(self) -> None:
        """Stop claiming and cancel the jobs in hand; their leases expire and another runner
        takes them up (stopping is indistinguishable from dying, on purpose)."""
        tasks = [t for t in (self._task, self._sweeping, *self._running) if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._task = None

    async def _loop(self) -> None:
        while True:
            try:
                busy = await self.run_available()
            except Exception:  # noqa: BLE001 - a database hiccup must not end the loop
                logger.exception("job runner %s: claiming failed", self.owner)
                busy = False
            if not busy:
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.args.poll_interval_s):
                        await self._wake.wait()

    async def run_available(self) -> bool:
        """Claim what fits in the free slots (and due webhooks) and start it; True if any."""
        self._running = {t for t in self._running if not t.done()}
        started = False
        while len(self._running) < self.args.concurrency:
            job = await asyncio.to_thread(self.store.claim, self.owner,
                                          max_running_per_tenant=self.args.max_running_per_tenant)
            if job is None:
                break
            self._spawn(self.execute(job))
            started = True
        if len(self._running) < self.args.concurrency:
            pending = await asyncio.to_thread(self.store.claim_webhook)
            if pending is not None:
                self._spawn(self.deliver(pending))
                started = True
        if self._sweep is not None and (self._sweeping is None or self._sweeping.done()):
            self._sweeping = asyncio.create_task(self._sweep_once())
        return started

    async def _sweep_once(self) -> None:
        try:
            await self._sweep()
        except Exception:  # noqa: BLE001 - retried on the next round
            logger.exception("job runner %s: sweep failed", self.owner)

    def _spawn(self, coro) -> None:
        task = asyncio.create_task(coro)
        self._running.add(task)
        task.add_done_callback(self._running.discard)

    async def drain(self) -> None:
        """Wait for the jobs in hand (tests and graceful shutdowns)."""
        while self._running:
            await asyncio.gather(*list(self._running), return_exceptions=True)

    # ------------------------------------------------------------------------ one job
    async def execute(self, job: ClaimedJob) -> bool:
        """Run one claimed job to its end; True if this runner recorded its result."""
        progress = 0.0
        lost = asyncio.Event()

        async def heartbeat() -> None:
            while True:
                await asyncio.sleep(self.args.heartbeat_s)
                if not await asyncio.to_thread(self.store.heartbeat, job, progress):
                    lost.set()
                    return

        beat = asyncio.create_task(heartbeat())
        try:
            segment_chars = job.segment_chars or self.args.segment_chars
            segments = self._segment(job.request, segment_chars)
            pieces = await self._resumed_segments(job, min(job.segments_done, len(segments)))
            progress = len(pieces) / max(len(segments), 1) * 0.95
            for index in range(len(pieces), len(segments)):
                if lost.is_set():
                    logger.warning("job %s: lease lost, stopping", job.id)
                    return False
                out = await self._synthesize(job, segments[index], index)
                if pieces and out.sample_rate != pieces[0].sample_rate:
                    raise ValueError("segments came back at different sample rates")
                pieces.append(out)
                progress = (index + 1) / len(segments) * 0.95
                if not await asyncio.to_thread(
                    self.store.checkpoint, job, index, out.audio, out.sample_rate,
                    segment_chars=segment_chars, progress=progress,
                ):
                    return False
            rate = pieces[0].sample_rate if pieces else 0
            joined = crossfade_join([p.audio for p in pieces], rate, self.args.crossfade_ms)
            if inspect.iscoroutinefunction(self._encode):
                encoded = await self._encode(joined, rate, job.request.output)
            else:
                encoded = await asyncio.to_thread(self._encode, joined, rate, job.request.output)
            if self._mark is not None:  # the job's id stands for the request id
                encoded = dataclasses.replace(encoded, data=await self._mark(
                    encoded.data, encoded.extension, AIMark(job.request.model, job.id)))
            words = None
            if self._timings is not None and pieces:
                starts = segment_starts([p.audio.size for p in pieces], rate,
                                        self.args.crossfade_ms)
                joined_s = joined.size / rate if rate else 0.0
                words = await self._timings(job, segments, pieces, starts,
                                            encoded.audio_seconds / joined_s if joined_s else 1.0)
            won = await asyncio.to_thread(self.store.complete, job, encoded.data,
                                          encoded.content_type, encoded.extension,
                                          encoded.audio_seconds, segments=len(segments),
                                          words=words)
        except asyncio.CancelledError:
            raise  # stopped or dying: the lease runs out and the job is taken up again
        except Exception as exc:  # noqa: BLE001 - recorded on the job, never lost
            client_error = isinstance(exc, PlatformError | ValueError)
            code = getattr(exc, "code", None) or ("invalid_request" if client_error else "job_error")
            message = str(exc) if client_error else f"synthesis failed ({type(exc).__name__})"
            logger.warning("job %s attempt %d failed: %s", job.id, job.attempt, type(exc).__name__)
            await asyncio.to_thread(self.store.fail, job, code, message, retry=not client_error)
            await self._deliver_if_due(job)
            return False
        finally:
            beat.cancel()
        if won:
            await self._deliver_if_due(job)
        return won

    async def _resumed_segments(self, job: ClaimedJob, done: int) -> list[SegmentAudio]:
        """The checkpointed audio of the first `done` segments (an earlier attempt's work);
        it stops at the first checkpoint that is missing or does not open, and the job
        continues from there."""
        pieces: list[SegmentAudio] = []
        for index in range(done):
            try:
                audio, rate = await asyncio.to_thread(self.store.load_segment, job, index)
            except (NotFound, DecryptionError) as exc:
                logger.warning("job %s: segment %d checkpoint unusable (%s); synthesizing "
                               "from there", job.id, index, type(exc).__name__)
                break
            pieces.append(SegmentAudio(audio, rate))
        if done:
            logger.info("job %s attempt %d resumes at segment %d", job.id, job.attempt,
                        len(pieces))
        return pieces

    async def _deliver_if_due(self, job: ClaimedJob) -> None:
        pending = await asyncio.to_thread(self.store.pending_webhook, job.tenant_id, job.id)
        if pending is not None:
            await self.deliver(pending)

    async def deliver(self, pending: PendingWebhook) -> bool:
        async def attempted(n: int, error: str | None) -> None:
            await asyncio.to_thread(self.store.webhook_attempted, pending.job.id, n, error)

        event = f"job.{pending.job.status}"
        result = await self.webhooks.deliver(
            pending.url, pending.secret, event, {"type": event, "data": pending.job.as_dict()},
            delivery_id=f"{pending.job.id}:{pending.job.status}",
            done_attempts=pending.attempts, on_attempt=attempted,
        )
        await asyncio.to_thread(self.store.webhook_finished, pending.job.id, result.delivered,
                                result.error)
        return result.delivered
