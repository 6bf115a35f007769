"""The continuous-batching step loop: every request on one model advances one codec frame per
step, together. One `StepLoop` per loaded checkpoint, on one thread:

    schedule (scheduler: admit waiting jobs into free slots, pack the rows that can step)
    -> run (prompt builder + model runner: prefill the admitted, batched, a long prompt in
       chunks of one step's budget; then one step for the rows that are ready)
    -> postprocess (frames to their jobs; who is done; chunks to the output stage)

A job leaves on EOS, its frame cap (max_new_tokens - 1, as stock qwen-tts), its runaway
budget (frames per text token), or cancellation, and its slot is free for the next step.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from typing import Any

import numpy as np
import torch

from deployments.engine.model_runner import ModelRunner
from deployments.engine.output import OutputStage
from deployments.engine.pacing import Pacer, view
from deployments.engine.prompt_builder import PromptBuilder
from deployments.engine.request import (
    Job,
    LoopStats,
    PreparedRequest,
    Sink,
    SlotState,
    StreamStats,
    frame_budget,
)
from deployments.engine.scheduler import Scheduler
from deployments.engine.text_input import TextInput
from deployments.engine.types import (
    EngineConfig,
    EngineError,
    FinishReason,
    StepObserver,
    StreamCancelled,
    StreamChunking,
    UnsupportedValueError,
)

log = logging.getLogger(__name__)


#: Steps' output the codec thread may hold (one decoding, one queued) before the loop waits
#: for it: generation overlaps decoding, but never runs ahead of it.
CODEC_BACKLOG = 2


class StepLoop:
    """See the module docstring. Thread-safe `submit`, `wake`, `close`."""

    def __init__(self, tts: Any, config: EngineConfig, *, sample_rate: int,
                 samples_per_frame: int, stats: StreamStats, slots: int | None = None,
                 context: int | None = None, observer: StepObserver | None = None) -> None:
        self._config = config
        self._observer = observer or StepObserver()
        self.loop_stats = LoopStats()
        self.pacer = Pacer(config)
        self._last_step_at: float | None = None  # the cadence the pacer's step model reads
        self._last_batch = 0
        mode = config.compile
        if mode == "auto":
            on_cuda = next(tts.model.talker.parameters()).device.type == "cuda"
            mode = "cudagraphs" if on_cuda else "none"
        self.runner = ModelRunner(tts, slots=slots or config.max_slots,
                                  context=context or config.max_context_tokens, compile_mode=mode,
                                  batch_buckets=config.batch_buckets)
        self.prompts = PromptBuilder(tts)
        self.runner.set_tts_pad(self.prompts.tts_pad)
        self.output = OutputStage(tts, sample_rate=sample_rate, samples_per_frame=samples_per_frame,
                                  stats=stats, device=self.runner.device, pacer=self.pacer,
                                  loop_stats=self.loop_stats)
        self.scheduler = Scheduler(config, self.runner, self.prompts, self.output, self.loop_stats,
                                   tts.processor.tokenizer, pacer=self.pacer)
        self.observer = self._observer
        self._thread = threading.Thread(target=self._run, name="qtts-step-loop", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------ any thread
    @property
    def observer(self) -> StepObserver:
        return self._observer

    @observer.setter
    def observer(self, observer: StepObserver) -> None:
        """Metrics hooks (the loop's, the scheduler's and the codec thread's)."""
        self._observer = observer
        self.scheduler.observer = observer
        self.output.observer = observer

    @property
    def capacity(self) -> int:
        return self.runner.slots

    @property
    def idle(self) -> bool:
        """True while no slot can step and every change was looked at (tests wait for it)."""
        return self.scheduler.idle

    def submit(self, job: Job) -> None:
        self.scheduler.submit(job)

    def wake(self) -> None:
        self.scheduler.wake()

    def close(self) -> None:
        self.scheduler.close()
        self._thread.join(5)
        self.output.close()

    # ------------------------------------------------------------------ the loop thread
    def _run(self) -> None:
        torch.set_grad_enabled(False)
        sched = self.scheduler
        while True:
            if not sched.rows:  # going idle: the wait for the next job is no step's time
                self._last_step_at = None
            if (candidates := sched.wait_for_work()) is None:
                break
            try:
                with torch.inference_mode():
                    for job in sched.admissible(candidates):
                        self._admit(job)
                    now = time.perf_counter()
                    oldest = max((now - s.job.arrived_at for s in sched.rows
                                  if s.pending is not None), default=0.0)
                    if self.pacer.prefill_allowed([view(s, now) for s in sched.rows], oldest):
                        self._prefill()
                    sched.refresh_text()
                    stepping = sched.partition()
                    if stepping:
                        self._step(stepping)
                    else:
                        self._last_step_at = None
            except Exception as exc:  # noqa: BLE001 - a failed step fails its jobs, not the loop
                log.exception("step loop failure")
                err = EngineError(f"batched generation failed: {type(exc).__name__}: {exc}")
                err.__cause__ = exc
                for slot in sched.rows:
                    self.output.fail(slot.job, err)
                sched.rows.clear()
            self.loop_stats.active = len(sched.rows)
            self.loop_stats.waiting_for_text = sum(s.pending is None and s.waits_for_text
                                                   for s in sched.rows)
            self.observer.on_occupancy(len(sched.rows), self.loop_stats.waiting)
        err = EngineError("the engine was shut down")
        for job in sched.drain():
            self.output.fail(job, err)

    def _admit(self, job: Job) -> None:
        """Build the job's prompt and give it the next free row; its prefill follows
        (`_prefill`). A failure fails this job only."""
        job.started_at = time.perf_counter()
        job.queue_wait_s = job.started_at - job.submitted_at
        self.observer.on_admit(job.queue_wait_s)
        if job.cancelled.is_set():
            self.output.fail(job, StreamCancelled())
            return
        try:
            slot, embed = self._prompt(job)
        except UnsupportedValueError as exc:
            self.output.fail(job, exc)
            return
        except Exception as exc:  # noqa: BLE001
            self.output.fail(job, EngineError(f"prompt failed: {type(exc).__name__}: {exc}"))
            return
        rows = self.scheduler.rows
        row = len(rows)
        try:
            self.runner.load_row(row, job.prepared.sampling, seed=slot.seed,
                                 min_frames=slot.min_frames)
            self.runner.set_text(row, slot.trailing)
        except Exception as exc:  # noqa: BLE001 - fails this request only
            self._admission_failed(job, exc)
            return
        slot.pending = embed
        rows.append(slot)
        self.loop_stats.admitted += 1
        self.output.started(job)

    def _admission_failed(self, job: Job, exc: Exception) -> None:
        log.exception("admission failure")
        err = EngineError(f"batched prefill failed: {type(exc).__name__}: {exc}")
        err.__cause__ = exc
        self.output.fail(job, err)

    def _prefill(self) -> None:
        """At most `prefill_chunk_tokens` of prompt go into the cache per step: the whole
        prompts that fit are prefilled together (padded to the longest), else the next chunk
        of one long prompt (a clone's reference codes), so a newcomer delays the running
        streams' next frame by at most one such budget."""
        budget = self._config.prefill_chunk_tokens
        rows = self.scheduler.rows
        waiting = [(i, s) for i, s in enumerate(rows) if s.pending is not None]
        if not waiting:
            return
        batch: list[tuple[int, SlotState]] = []
        longest = 0
        for i, s in waiting:
            size = int(s.pending.shape[1])
            if s.prefilled or size > budget or (len(batch) + 1) * max(longest, size) > budget:
                continue
            batch.append((i, s))
            longest = max(longest, size)
        if not batch:  # one chunk of the first long prompt
            batch = [waiting[0]]
        try:
            if len(batch) == 1:
                i, s = batch[0]
                chunk, rest = s.pending[:, :budget], s.pending[:, budget:]
                hidden = self.runner.prefill([i], [chunk], start=s.prefilled)
                s.prefilled += int(chunk.shape[1])
                s.pending = rest if rest.shape[1] else None
                if s.pending is None:
                    self.runner.first_token([i], hidden)
            else:
                index = [i for i, _ in batch]
                hidden = self.runner.prefill(index, [s.pending for _, s in batch])
                self.runner.first_token(index, hidden)
                for _, s in batch:
                    s.prefilled, s.pending = int(s.pending.shape[1]), None
        except Exception as exc:  # noqa: BLE001 - fails these requests only
            for i, s in sorted(batch, reverse=True):
                self._admission_failed(s.job, exc)
                self.scheduler.release(i)

    def _prompt(self, job: Job) -> tuple[SlotState, torch.Tensor]:
        """The job's prefill embeddings and its slot state (limits, text rows)."""
        p: PreparedRequest = job.prepared
        arriving = job.text_input is not None
        input_id, closed, version = None, True, -1
        if arriving:
            text, closed, version = job.text_input.snapshot()
            if closed and not text.strip():
                raise UnsupportedValueError("text", text, [], "text must not be empty")
            if closed:
                job.settled.close(text)
            input_id = self.prompts.wrapped(job.settled.ids)
        embed, trailing, text_tokens = self.prompts.build(p, p.non_streaming_mode, input_id, closed)
        t = int(embed.shape[1])
        context = self.runner.context
        room = context - t
        if room < 1:
            raise UnsupportedValueError(
                "text", f"{t} prompt tokens", [],
                f"the prompt is too long for this deployment ({t} tokens; "
                f"max_context_tokens is {context})")
        length_cap = p.max_new_tokens - 1  # stock qwen-tts makes at most max_new_tokens - 1
        budget = frame_budget(self._config, text_tokens, p.min_frames)
        if not arriving and room < min(length_cap, budget):
            raise UnsupportedValueError(
                "input", f"{t} prompt tokens + {min(length_cap, budget)} frames", [],
                f"the input does not fit this deployment's context of {context} tokens: its "
                f"prompt takes {t} and its frame budget {min(length_cap, budget)}; shorten the "
                "input or lower max_new_tokens")
        cap = min(length_cap, budget, room)
        seed = p.seed if p.seed is not None else random.getrandbits(63)
        slot = SlotState(job=job, seed=seed, trailing=trailing, cap=cap,
                         budget_bound=cap < length_cap, min_frames=max(2, p.min_frames),
                         prompt_len=t, text_tokens=text_tokens)
        if p.voice_prompt is not None and p.voice_prompt.icl_mode:
            slot.prefix = torch.as_tensor(np.asarray(p.voice_prompt.ref_code, dtype=np.int64))
        if arriving:
            slot.length_cap, slot.room = length_cap, room
            slot.lookahead = self._config.text_lookahead_tokens
            job.text_version, slot.text_closed = version, closed
            if slot.prefix is not None:
                slot.ref_ids = self.prompts.ref_ids(p.voice_prompt.ref_text)
                slot.skip = int(slot.prefix.shape[0]) + 1  # the codec rows the prompt fills
            else:
                slot.skip = 1  # the first text token is in the prompt
            slot.trailing_ids = (slot.ref_ids + job.settled.ids)[slot.skip:]
        return slot, embed

    def _step(self, n: int) -> None:
        """One frame for the slots in rows 0..n-1: run, then one host copy, then the host
        work (frames to jobs, who is done, chunks due). Waits first while the codec thread
        has more than `CODEC_BACKLOG` steps' output to decode (`OutputStage.wait_backlog`);
        the wait counts in the step cadence the pacer measures."""
        self.output.wait_backlog(CODEC_BACKLOG)
        t0 = time.perf_counter()
        if self._last_step_at is not None:  # cadence: prefills and host work included
            self.pacer.steps.observe(self._last_batch, t0 - self._last_step_at)
        self._last_step_at, self._last_batch = t0, n
        slots = self.scheduler.rows[:n]
        sampling = [s.job.prepared.sampling for s in slots]
        out = self.runner.step(
            n, max(s.position for s in slots) + 1,
            sampled=any(x.do_sample or x.subtalker_do_sample for x in sampling),
            penalize=any(x.subtalker_repetition_penalty != 1.0 for x in sampling))
        host = out[:n].cpu()  # the one read of the step: frames and next tokens
        eos = self.runner.eos
        finished: dict[int, FinishReason] = {}
        for i, s in enumerate(slots):
            s.peak_batch = max(s.peak_batch, n)
            s.codes.append(host[i, :16])
            s.job.frames += 1
            self.output.count_frame(s.job)
            if s.job.cancelled.is_set():
                finished[i] = FinishReason.CANCELLED
            elif int(host[i, 16]) == eos:
                finished[i] = FinishReason.EOS
            elif s.job.frames >= s.cap:
                finished[i] = FinishReason.BUDGET if s.budget_bound else FinishReason.LENGTH
        for i in finished:  # arriving text: what it had read (all of it, or a cap ended it)
            slots[i].final_chars = self.scheduler.read_chars(slots[i])
        due = self.output.due_chunks(slots, finished, self.scheduler.read_chars, batch=n)
        leaving = [(slots[i], finished[i]) for i in sorted(finished)]
        if due or leaving:
            self.output.submit(lambda: self.output.deliver(due, leaving))
        for i in sorted(finished, reverse=True):
            self.scheduler.release(i)
        st = self.loop_stats
        st.steps += 1
        st.last_batch_size = n
        st.last_step_seconds = time.perf_counter() - t0
        self.observer.on_step(n, st.last_step_seconds)


class LoopStreamRunner:
    """A streaming request in the step loop (the `StreamRunner` protocol of `streaming`)."""

    def __init__(self, loop: StepLoop, prepared: PreparedRequest, chunking: StreamChunking,
                 sample_rate: int, text_input: TextInput | None = None) -> None:
        self._loop = loop
        self._job = Job(prepared, chunking=chunking, text_input=text_input)
        self.sample_rate = sample_rate

    @property
    def frames(self) -> int:
        return self._job.frames

    def start(self, sink: Sink) -> None:
        self._job.sink = sink
        self._loop.submit(self._job)

    def cancel(self) -> None:
        """Leave the loop at the end of the current step (non-blocking, idempotent)."""
        if not self._job.done.is_set():
            self._job.cancel()
            self._loop.wake()

    def join(self, timeout: float | None = None) -> bool:
        return self._job.done.wait(timeout)
