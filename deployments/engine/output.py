"""The output stage: codec frames to audio, on the codec thread, in step order.

Streaming requests get PCM chunks as their frames arrive; the chunks due in a step are decoded
by the codec decoder run with per-stream state (`codec.StatefulCodecDecoder`: each chunk
decodes only its new frames; the samples are the whole-utterance decode's up to float
rounding), which was measured 2x (1 stream) to 7x (16 streams) cheaper than re-decoding 25
frames of left context per chunk (`OutputStage.stateful_codec = False` keeps that scheme, the
reference backend's). One decode call per chunk length, whatever the streams' transformer
contexts (the decoder pads and masks them): grouping by context length as well made one call
per stream once streams arrive at different times (tiny checkpoint, one CPU thread: one-frame
chunks of 8 streams 28 ms that way, 8.5 ms in one call; `benchmarks/codec_batching.py`).
Non-streaming requests are decoded once, at the end, exactly as qwen-tts decodes them. The
codec thread also finishes jobs (final chunk, result or error), so a request's sink sees its
chunks and its end in order.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from deployments.engine.codec import StatefulCodecDecoder
from deployments.engine.pacing import Pacer
from deployments.engine.request import Job, LoopStats, SlotState, StreamStats
from deployments.engine.types import (
    AudioChunk,
    EngineError,
    FinishReason,
    StepObserver,
    StreamCancelled,
    SynthesisResult,
)

log = logging.getLogger(__name__)


class OutputStage:
    """Chunk windows (loop thread) and their decoding and delivery (codec thread)."""

    #: decode streams with the codec's own state (True) or behind left-context windows
    stateful_codec = True

    def __init__(self, tts: Any, *, sample_rate: int, samples_per_frame: int,
                 stats: StreamStats, device: torch.device, pacer: Pacer | None = None,
                 loop_stats: LoopStats | None = None) -> None:
        self._pacer = pacer
        self._loop_stats = loop_stats or LoopStats()
        self.observer = StepObserver()  # the loop's (replaced with it)
        self._speech_tokenizer = tts.model.speech_tokenizer
        self._decoder = StatefulCodecDecoder(tts.model.speech_tokenizer.model.decoder)
        self._sample_rate = sample_rate
        self._spf = samples_per_frame
        self._stats = stats
        self._device = device
        # codec decoding and sinks run on their own thread, in submission order, so the next
        # step's generation overlaps this step's decoding (torch releases the GIL)
        self._tasks: queue.Queue[Callable[[], None] | None] = queue.Queue()
        self._backlog = 0  # tasks submitted and not finished (queued or running)
        self._drained = threading.Condition()
        self._thread = threading.Thread(target=self._worker, name="qtts-codec", daemon=True)
        self._thread.start()

    def submit(self, task: Callable[[], None]) -> None:
        """Run `task` on the codec thread after the ones submitted before it."""
        with self._drained:
            self._backlog += 1
        self._tasks.put(task)

    def wait_backlog(self, limit: int) -> None:
        """Block (the loop thread) until at most `limit` codec tasks are queued or running.
        Frames made faster than the codec thread decodes them only wait in its queue, where
        no listener hears them: every stream's first audio and next chunk would be late by
        the whole backlog (measured: paced streams at 8 req/s in process had 5 s of it with
        an idle loop). Waiting here instead slows the steps, which the pacer measures."""
        with self._drained:
            while self._backlog > limit and self._thread.is_alive():
                self._drained.wait(0.5)

    def close(self) -> None:
        self._tasks.put(None)
        self._thread.join(5)

    def _worker(self) -> None:
        torch.set_grad_enabled(False)
        while True:
            task = self._tasks.get()
            if task is None:
                return
            try:
                with torch.inference_mode():
                    task()
            except Exception:  # noqa: BLE001 - tasks fail their own jobs
                log.exception("codec task failed")
            finally:
                with self._drained:
                    self._backlog -= 1
                    self._drained.notify_all()

    def count_frame(self, job: Job) -> None:
        if job.chunking is not None:
            self._stats.frames_generated += 1

    def started(self, job: Job) -> None:
        """A streaming job entered the loop (counted in StreamStats.active until it ends)."""
        if job.chunking is not None:
            self._stats.streams_started += 1
            self._stats.active += 1
            job.tracked = True

    def due_chunks(self, slots: list[SlotState], done: dict[int, FinishReason],
                   read_chars: Callable[[SlotState], int], batch: int = 0) -> list:
        """The chunk windows due this step (loop thread: reads the codes, marks them taken).
        The first chunk is `first_chunk_frames`; later ones go out as the pacer's schedule
        says (`Pacer.chunk_due`: when the listener's margin needs them, at most
        `chunk_frames`), or every `chunk_frames` with pacing off. The margin counts the
        chunks already handed to the codec thread as sent (`StreamClock.margin_once_sent`):
        the next chunk leaves after them, so the listener has them by then."""
        due: list[tuple[SlotState, torch.Tensor, int, bool, int, float]] = []
        now = time.perf_counter()
        for i, s in enumerate(slots):
            ch = s.job.chunking
            if ch is None or done.get(i) is FinishReason.CANCELLED:
                continue
            pending = len(s.codes) - s.emitted
            if self._pacer is not None:
                go = self._pacer.chunk_due(
                    pending, s.chunks_due == 0,
                    s.job.clock.margin_once_sent(s.emitted * self._spf / self._sample_rate,
                                                 now) if s.chunks_due else None,
                    batch or len(slots),
                    ch.first_chunk_frames, ch.chunk_frames)
            else:
                go = pending >= (ch.first_chunk_frames if s.chunks_due == 0 else ch.chunk_frames)
            if go or (i in done and pending > 0):
                history = s.codes if s.prefix is None else [*s.prefix, *s.codes]
                offset = len(history) - len(s.codes)
                start = offset + s.emitted
                if self.stateful_codec:  # new frames only (an ICL prefix goes in first)
                    ctx = offset if s.emitted == 0 else 0
                else:
                    ctx = min(ch.left_context_frames, start)
                window = torch.stack(history[start - ctx:], dim=0)
                due.append((s, window, ctx, i in done, read_chars(s), now))
                s.emitted = len(s.codes)
                s.chunks_due += 1
        return due

    def deliver(self, due: list, leaving: list[tuple[SlotState, FinishReason]]) -> None:
        """Codec thread: decode the due chunks batched by window length (one call per length:
        the stateful decoder masks streams' different context lengths), emit them, then
        finish the jobs that left the loop this step."""
        started = time.perf_counter()
        groups: dict[int, list[tuple[SlotState, torch.Tensor, int, bool, int, float]]] = {}
        for d in due:
            s = d[0]
            if self.stateful_codec and s.codec is None:
                s.codec = self._decoder.new_state()
            groups.setdefault(d[1].shape[0], []).append(d)
        for items in groups.values():
            batch = torch.stack([torch.clamp(d[1], min=0).T for d in items]).to(self._device)
            try:
                if self.stateful_codec:
                    wav = self._decoder.step(batch, [d[0].codec for d in items])
                else:
                    wav = self._decoder(batch)
                wav = wav.to(torch.float32).cpu().numpy()
            except Exception as exc:  # noqa: BLE001
                for s, *_ in items:
                    s.job.cancel()
                    self.fail(s.job, EngineError(f"codec decode failed: {type(exc).__name__}: {exc}"))
                continue
            for j, (s, window, ctx, final, chars, due_at) in enumerate(items):
                audio = wav[j, 0, ctx * self._spf:window.shape[0] * self._spf]
                if final:  # the tail goes out with the final chunk
                    s.tail = audio
                else:
                    if self._pacer is not None:
                        self._pacer.chunk_left(due_at, started, time.perf_counter())
                    try:
                        self._emit(s, audio, final=False, chars=chars)
                    except Exception as exc:  # noqa: BLE001
                        s.job.cancel()
                        self.fail(s.job, exc)
        for s, reason in leaving:
            self.finish(s, reason)

    def _emit(self, s: SlotState, audio: np.ndarray, *, final: bool,
              reason: FinishReason | None = None, chars: int = 0) -> None:
        job = s.job
        if job.sink is None or job.done.is_set():
            return
        if not np.isfinite(audio).all():
            raise EngineError("model produced non-finite audio")
        if audio.size:
            self._clock(job, audio.size / self._sample_rate)
        job.sink(AudioChunk(
            audio=np.ascontiguousarray(audio, dtype=np.float32), sample_rate=self._sample_rate,
            index=s.chunks, frames=audio.size // self._spf, final=final, total_frames=job.frames,
            input_tokens=s.text_tokens if final else 0,
            generation_seconds=time.perf_counter() - job.submitted_at, finish_reason=reason,
            text_chars=chars,
        ))
        s.chunks += 1

    def _clock(self, job: Job, audio_s: float) -> None:
        """A chunk of `audio_s` leaves: its listener's margin then, and whether it was late
        (the listener had run dry: a gap the server caused)."""
        first = job.clock.first_audio_at is None
        margin = job.clock.sent(audio_s, time.perf_counter())
        if first:
            return
        late = margin < 0
        if late:
            self._loop_stats.late_chunks += 1
        self.observer.on_chunk(margin, late)

    def finish(self, s: SlotState, reason: FinishReason) -> None:
        job = s.job
        if job.done.is_set():
            return
        if reason is FinishReason.CANCELLED:
            self.fail(job, StreamCancelled())
            return
        try:
            if job.chunking is not None:
                tail = s.tail if s.tail is not None else np.zeros(0, np.float32)
                self._emit(s, tail, final=True, reason=reason, chars=s.final_chars)
                self._untrack(job)
            else:
                job.result = self._whole(s, reason)
        except Exception as exc:  # noqa: BLE001
            self.fail(job, exc if isinstance(exc, EngineError) else
                       EngineError(f"decode failed: {type(exc).__name__}: {exc}"))
            return
        job.set_done()

    def _whole(self, s: SlotState, reason: FinishReason) -> SynthesisResult:
        """Decode a finished non-streaming job as qwen-tts decodes its own output."""
        codes = torch.stack(s.codes).to(self._device)
        if s.prefix is not None:
            full = torch.cat([s.prefix.to(self._device), codes], dim=0)
        else:
            full = codes
        wavs, sr = self._speech_tokenizer.decode([{"audio_codes": full}])
        wav = wavs[0]
        if s.prefix is not None:
            cut = int(s.prefix.shape[0] / max(full.shape[0], 1) * wav.shape[0])
            wav = wav[cut:]
        audio = np.ascontiguousarray(np.asarray(wav, dtype=np.float32).reshape(-1))
        if s.prefix is not None:
            audio = audio[audio.size % self._spf:]
        if audio.size == 0 or not np.isfinite(audio).all():
            raise EngineError("model produced empty or non-finite audio")
        p = s.job.prepared
        return SynthesisResult(
            audio=audio, sample_rate=int(sr), frames=audio.size // self._spf,
            generation_seconds=time.perf_counter() - s.job.submitted_at,
            extra={"backend": "batched", "seed": p.seed, "max_new_tokens": p.max_new_tokens,
                   "codes": codes.cpu().numpy(), "batch_size": s.peak_batch,
                   "frame_cap": s.cap, "queue_wait_seconds": s.job.queue_wait_s,
                   "input_tokens": s.text_tokens},
            finish_reason=reason,
        )

    def _untrack(self, job: Job) -> None:
        if job.tracked:
            job.tracked = False
            self._stats.active -= 1

    def fail(self, job: Job, exc: BaseException) -> None:
        if job.done.is_set():
            return
        if job.chunking is not None and isinstance(exc, StreamCancelled):
            self._stats.streams_cancelled += 1
        self._untrack(job)
        job.error = exc
        if job.sink is not None:
            job.sink(exc)
        job.set_done()
