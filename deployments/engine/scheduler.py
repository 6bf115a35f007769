"""The scheduler: the wait queue, admission at step boundaries, row packing, and text that is
still arriving.

Requests wait in a bounded queue (`submit` raises EngineOverloadedError beyond it) and go into
free cache slots at a step boundary. The rows that can step are kept packed in rows 0..n-1
(a leaving row is filled by the last one; a row whose arriving text has not come yet is
swapped behind the ready ones), so a step reads rows 0..n-1 of every buffer as views. A job
whose text is still arriving is admitted once its prompt's text has settled; its trailing text
rows grow as more text settles.

Thread-safe: `submit`, `wake`, `close`, `idle`; the rest runs on the loop thread.
"""

from __future__ import annotations

import collections
import logging
import threading
import time

import numpy as np
import torch

from deployments.engine.model_runner import ModelRunner
from deployments.engine.output import OutputStage
from deployments.engine.pacing import Decision, Pacer, expected_frames, newcomer, view
from deployments.engine.prompt_builder import PromptBuilder
from deployments.engine.request import Job, LoopStats, SlotState, frame_budget
from deployments.engine.text_input import SettledTokens
from deployments.engine.types import (
    EngineConfig,
    EngineError,
    EngineOverloadedError,
    FinishReason,
    StepObserver,
)

log = logging.getLogger(__name__)


class Scheduler:
    """See the module docstring."""

    def __init__(self, config: EngineConfig, runner: ModelRunner, prompts: PromptBuilder,
                 output: OutputStage, stats: LoopStats, tokenizer: object,
                 pacer: Pacer | None = None) -> None:
        self._config = config
        self.pacer = pacer or Pacer(config.model_copy(update={"pacing": False}))
        self.observer: StepObserver = StepObserver()  # the loop's (replaced with it)
        self._runner = runner
        self._prompts = prompts
        self._output = output
        self._stats = stats
        self._tokenizer = tokenizer
        self.slots = runner.slots
        self.rows: list[SlotState] = []
        self._waiting: collections.deque[Job] = collections.deque()
        self._cond = threading.Condition()
        self._closed = False
        self._kicked = False  # something changed that the loop has not looked at yet
        self._sleeping = False  # the loop thread waits for work

    # ------------------------------------------------------------------ any thread
    def submit(self, job: Job) -> None:
        """Queue `job`; raises EngineOverloadedError when every slot is busy and the wait
        queue is full (nothing is queued then)."""
        with self._cond:
            if self._closed:
                raise EngineError("the engine's step loop is closed")
            free = self.slots - len(self.rows)
            if len(self._waiting) >= free + self._config.max_waiting:
                self._stats.rejected += 1
                raise EngineOverloadedError(
                    f"all {self.slots} synthesis slots are busy and "
                    f"{len(self._waiting)} requests are waiting", self._config.retry_after_s)
            self._waiting.append(job)
            self._stats.waiting = len(self._waiting)
            self._kicked = True
            self._cond.notify()
        if job.text_input is not None:
            job.text_input.add_listener(self.wake)

    @property
    def idle(self) -> bool:
        """True while the loop has looked at every change and no slot can step."""
        with self._cond:
            return self._sleeping and not self._kicked

    def wake(self) -> None:
        """Make the loop look at cancellations and arrived text now."""
        with self._cond:
            self._kicked = True
            self._cond.notify()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify()

    # ------------------------------------------------------------------ loop thread
    def wait_for_work(self) -> list[Job] | None:
        """Block until something can happen; the waiting jobs then (None once closed)."""
        with self._cond:
            while not self._closed and not self._kicked and not self._any_runnable():
                self._sleeping = True
                # a job waiting on admission is looked at again by its first-audio bound
                self._cond.wait(0.05 if self._waiting and self.pacer.bound_s else None)
                self._sleeping = False
                if self._waiting and self.pacer.bound_s:
                    break
            if self._closed:
                return None
            self._kicked = False
            return list(self._waiting)

    def drain(self) -> list[Job]:
        """Every job still queued or running (at shutdown)."""
        jobs = [s.job for s in self.rows] + list(self._waiting)
        self.rows.clear()
        self._waiting.clear()
        return jobs

    def _any_runnable(self) -> bool:
        """Work without a new event: a row to step or prefill, or a free slot for a waiting
        job whose text is all there (one whose text is arriving wakes the loop itself)."""
        if any(s.ready or s.pending is not None for s in self.rows):
            return True
        return len(self.rows) < self.slots and any(
            j.text_input is None or j.cancelled.is_set() for j in self._waiting)

    def admissible(self, candidates: list[Job]) -> list[Job]:
        """The waiting jobs that go into free slots now, in order, taken off the queue: a job
        whose text is still arriving goes in once its prompt's text has settled (a cancelled
        one goes in to be failed). With a first-audio bound (pacing), a job goes in only
        while the running streams' projected margins allow one more (`Pacer.admit`); a
        foreground stream that has waited the bound is refused (EngineOverloadedError: 503
        + Retry-After) instead of admitted to stutter."""
        free = self.slots - len(self.rows)
        chosen: list[Job] = []
        refused: list[Job] = []
        pacer = self.pacer
        views = None
        now = time.perf_counter()
        if pacer.enabled:  # the most urgent first: streams by deadline, background last
            candidates = sorted(candidates, key=lambda j: pacer.deadline(j, now))
        for job in candidates:
            refusable = (job.chunking is not None and not job.background
                         and job.text_input is None)
            waited = now - job.arrived_at
            if job.cancelled.is_set():
                if len(chosen) < free:
                    chosen.append(job)
                continue
            if len(chosen) >= free:
                if pacer.overdue(waited, refusable):
                    refused.append(job)
                continue
            if job.text_input is not None and not self._prompt_ready(job):
                continue
            if pacer.bound_s is not None:
                if views is None:
                    views = [view(s, now) for s in self.rows]
                decision = pacer.admit(views, expected_frames(job), self._first_frames(job),
                                       waited, refusable)
                if decision is Decision.WAIT:
                    continue
                if decision is Decision.REFUSE:
                    refused.append(job)
                    continue
                views.append(newcomer(job))
            chosen.append(job)
        if chosen or refused:
            with self._cond:
                for job in chosen + refused:
                    self._waiting.remove(job)
                self._stats.waiting = len(self._waiting)
                self._stats.refused += len(refused)
        for job in refused:
            self.observer.on_refused(waited := now - job.arrived_at)
            err = EngineOverloadedError(
                f"no synthesis slot could keep this stream ahead of its listener within "
                f"{pacer.bound_s:g} s (waited {waited:.2f} s; {len(self.rows)} running)",
                self._config.retry_after_s)
            self._output.submit(lambda job=job, err=err: self._output.fail(job, err))
        return chosen

    @staticmethod
    def _first_frames(job: Job) -> int:
        return job.chunking.first_chunk_frames if job.chunking is not None else 1

    def _prompt_ready(self, job: Job) -> bool:
        """Settle the job's text so far; True once the prompt has all the text it holds
        (the first token; with an ICL voice prompt, as many as fill the reference's codes)."""
        text, closed, version = job.text_input.snapshot()
        if job.settled is None:
            job.settled = SettledTokens(self._tokenizer)
            vp = job.prepared.voice_prompt
            if vp is not None and vp.icl_mode:
                codec_lens = int(np.asarray(vp.ref_code).shape[0]) + 1
                job.prompt_tokens = max(1, codec_lens - len(self._prompts.ref_ids(vp.ref_text)))
        if closed:
            return True
        if version != job.text_version:  # nothing new: no tokenizing at every step
            job.text_version = version
            job.settled.update(text)
        return len(job.settled.ids) >= job.prompt_tokens

    def partition(self) -> int:
        """Put the slots that step now in rows 0..k-1 (those waiting for text or for the rest
        of their prefill, and with pacing those that sit out this step for an urgent stream,
        after them) and return k. A cancelled slot that is waiting for text leaves here (it
        will not step again)."""
        for i in range(len(self.rows) - 1, -1, -1):
            s = self.rows[i]
            if not s.ready and s.job.cancelled.is_set():
                self._output.submit(lambda s=s: self._output.finish(s, FinishReason.CANCELLED))
                self.release(i)
        ready = [s.ready for s in self.rows]
        if self.pacer.enabled:  # urgency: who sits out this step (Pacer.hold)
            now = time.perf_counter()
            held = self.pacer.hold([view(s, now) for s in self.rows])
            ready = [r and not h for r, h in zip(ready, held, strict=True)]
        i, j = 0, len(ready) - 1
        while True:
            while i <= j and ready[i]:
                i += 1
            while i <= j and not ready[j]:
                j -= 1
            if i >= j:
                return i
            self._swap(i, j)
            ready[i], ready[j] = True, False

    def release(self, row: int) -> None:
        """Free `row`: the last active row moves into it, so rows stay packed."""
        last = len(self.rows) - 1
        if row != last:
            s = self.rows[last]
            self._runner.move(last, row, s.position, s.trailing.shape[0])
            self.rows[row] = s
        self.rows.pop()

    def _swap(self, a: int, b: int) -> None:
        sa, sb = self.rows[a], self.rows[b]
        self._runner.swap(a, b, sa.position, sb.position, sa.trailing.shape[0], sb.trailing.shape[0])
        self.rows[a], self.rows[b] = sb, sa

    def refresh_text(self) -> None:
        """Bring the trailing rows of every slot whose text is still arriving up to date:
        newly settled tokens are embedded and appended; on close, tts_eos goes after them and
        the whole text's tokenization replaces the settled one where it differs and has not
        been read yet."""
        for row, s in enumerate(self.rows):
            ti = s.job.text_input
            if ti is None or s.text_closed:
                continue
            text, closed, version = ti.snapshot()
            if version == s.job.text_version:
                continue
            s.job.text_version = version
            settled = s.job.settled
            if closed:
                if not settled.close(text):
                    self._stats.retokenized += 1
                    log.info("a streamed text tokenized differently as a whole; the unread rest follows the whole text")
            elif not settled.update(text):
                continue
            ids = (s.ref_ids + settled.ids)[s.skip:]
            keep = 0
            for old, new in zip(s.trailing_ids, ids, strict=False):
                if old != new:
                    break
                keep += 1
            keep = max(keep, min(s.job.frames, len(s.trailing_ids)))  # read rows stay
            rows = [s.trailing[:keep]]
            if len(ids) > keep:
                new_ids = torch.tensor([ids[keep:]], dtype=torch.long, device=self._runner.device)
                rows.append(self._prompts.text_embed(new_ids)[0])
            if closed:
                rows.append(self._prompts.tts_eos[0])
            s.trailing = torch.cat(rows)
            self._runner.set_text(row, s.trailing, start=keep)
            s.trailing_ids = s.trailing_ids[:keep] + ids[keep:]
            s.text_closed = closed
            s.text_tokens = len(settled.ids)
            s.cap = min(s.length_cap, frame_budget(self._config, s.text_tokens, s.job.prepared.min_frames),
                        s.room)
            s.budget_bound = s.cap < s.length_cap

    @staticmethod
    def read_chars(s: SlotState) -> int:
        """Characters of a slot's arriving text the model has read (0 for whole-text jobs)."""
        if s.job.settled is None:
            return 0
        return s.job.settled.read_chars(s.skip - len(s.ref_ids) + s.job.frames)
