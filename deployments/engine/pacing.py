"""Pacing: keep every admitted stream ahead of its listener, and admit only what can be kept.

A streaming job's listener starts playing when its first chunk leaves and then plays in real
time, so the server knows each stream's *margin*: audio sent minus playback time since its
first audio (`StreamClock`). Its *deadline* is when that listener runs dry (before its first
chunk: its submission + the first-audio bound). Everything here reads margins:

- the chunk schedule (`Pacer.chunk_due`): the first chunk is `first_chunk_frames` (more
  while steps are so slow that, with a chunk floor, the second chunk would come after the
  first had played: `first_target`); later a stream gathers only as many frames as it can
  make while its listener keeps `reserve_s`
  (`chunk_target`: margin beyond the reserve and the codec's lag, over the step time), at
  most `chunk_frames`. Chunks start at a frame and grow only as fast as the margin does,
  and every frame made goes out within one chunk, so the listener's buffer keeps what the
  engine's speed earns (a later step-time spike eats into it, not into the audio);
- urgency (`Pacer.hold`): while some stream is below `floor_s`, background rows (non-streaming
  requests, job segments) and streams far ahead of their listener (`ahead_s`) sit out the
  step, so the urgent ones step sooner;
- the prefill gate (`Pacer.prefill_allowed`): a prefill (or a long prompt's chunk) runs only
  while no stream is below `floor_s`;
- admission (`Pacer.admit`): a waiting job goes into a slot only while the projected margins
  of the running streams and its own stay above `headroom_s` with it stepping beside them;
  else it waits, and a stream that has waited `first_audio_bound_s` is refused (503 +
  Retry-After) instead of admitted to stutter.

Slots waiting for arriving text (speech-session incremental mode) take no step time and
their listener is fed by the text's arrival, not by us: they count for none of the above.
Step times come from the loop itself (`StepModel`, per batch size; the engine's warm-up
measures one row and every slot before the first request, and a wait for work is no step's
time). Plain Python: the loop gives it numbers and rows, it gives decisions; its unit tests
need no model.
"""

from __future__ import annotations

import enum
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from deployments.engine.request import Job, SlotState
    from deployments.engine.types import EngineConfig

#: Seconds of audio in one codec frame (12.5 frames per second).
FRAME_S = 0.08
#: Without a first-audio bound, the longest an admitted job's prefill waits for urgent
#: streams (measured: with no limit, new streams on a saturated loop waited 11 s at p95)
PREFILL_WAIT_S = 0.25
#: The codec lag's memory (`StepModel.half_life_s`, `Pacer.lag_s`): every this many seconds
#: without a chunk leaving, the lag last measured counts half as much
LAG_HALF_LIFE_S = 0.5


class StreamClock:
    """One stream's listener as the server sees it: written on the codec thread when a chunk
    leaves, read on the loop thread (two floats; a stale read is one chunk late)."""

    def __init__(self) -> None:
        self.first_audio_at: float | None = None
        self.sent_s = 0.0
        self.chunks = 0
        self.late_chunks = 0

    def margin(self, now: float) -> float | None:
        """Audio sent minus playback time since the first audio (None before it)."""
        if self.first_audio_at is None:
            return None
        return self.sent_s - (now - self.first_audio_at)

    def margin_once_sent(self, handed_s: float, now: float) -> float | None:
        """The margin counting the audio handed to the codec (`handed_s`: sent, or in the
        codec's queue, which sends in order) as sent: what the listener holds when the
        next chunk follows them (None before the first audio)."""
        if self.first_audio_at is None:
            return None
        return max(handed_s, self.sent_s) - (now - self.first_audio_at)

    def sent(self, audio_s: float, now: float) -> float:
        """A chunk of `audio_s` left now; returns the margin it found (< 0: it was late, its
        listener had run dry)."""
        if self.first_audio_at is None:
            self.first_audio_at = now
        margin = self.sent_s - (now - self.first_audio_at)
        self.sent_s += audio_s
        self.chunks += 1
        if margin < 0:
            self.late_chunks += 1
        return margin


class StepModel:
    """Seconds per step by batch size: an exponential average of the loop's cadence (start of
    one step to the start of the next, so prefills, host work and the codec thread's share of
    the cores are in it).

    `half_life_s`, for a figure that depends on the load of the moment rather than on a batch
    size (the codec's lag): an old figure's weight against a new observation also halves
    every `half_life_s` since it was last observed, on `clock` (`kept`)."""

    def __init__(self, alpha: float = 0.2, half_life_s: float | None = None,
                 clock: Callable[[], float] = time.perf_counter) -> None:
        self._alpha = alpha
        self._half_life_s = half_life_s
        self._clock = clock
        self._by_size: dict[int, float] = {}
        self._observed = 0  # observations so far: which size's figure is the fresher
        self._last_seen: dict[int, int] = {}
        self._seen_at: dict[int, float] = {}

    def observe(self, batch: int, seconds: float, now: float | None = None) -> None:
        old = self._by_size.get(batch)
        alpha = self._alpha
        if self._half_life_s is not None:
            now = self._clock() if now is None else now
            alpha = max(alpha, 1.0 - self.kept(batch, now))
            self._seen_at[batch] = now
        self._by_size[batch] = seconds if old is None else old + alpha * (seconds - old)
        self._observed += 1
        self._last_seen[batch] = self._observed

    def kept(self, batch: int, now: float | None = None) -> float:
        """What `batch`'s figure still weighs after the time since it was last observed: half
        per `half_life_s` (1 without `half_life_s`, or before any observation)."""
        seen = self._seen_at.get(batch)
        if seen is None or self._half_life_s is None:
            return 1.0
        age = max(0.0, (self._clock() if now is None else now) - seen)
        return 0.5 ** (age / self._half_life_s)

    @property
    def measured(self) -> dict[int, float]:
        """Seconds per step at each batch size measured so far."""
        return dict(self._by_size)

    def estimate(self, batch: int) -> float | None:
        """The step time at `batch` rows: measured, or from the nearest measured sizes (linear
        between two, proportional per row beyond them); None before any step."""
        if batch <= 0 or not self._by_size:
            return None
        if batch in self._by_size:
            return self._by_size[batch]
        sizes = sorted(self._by_size)
        below = [s for s in sizes if s < batch]
        above = [s for s in sizes if s > batch]
        if below and above:
            lo, hi = below[-1], above[0]
            a, b = self._by_size[lo], self._by_size[hi]
            return a + (b - a) * (batch - lo) / (hi - lo)
        if below:  # beyond what was seen: per-row slope of the two largest, at least linear
            lo = below[-1]
            per_row = self._by_size[lo] / lo
            if len(below) >= 2:
                lo2 = below[-2]
                per_row = max(per_row, (self._by_size[lo] - self._by_size[lo2]) / (lo - lo2))
            return self._by_size[lo] + per_row * (batch - lo)
        return self._by_size[above[0]]  # smaller than anything seen: no cheaper than that

    def one_more(self, batch: int) -> float | None:
        """The step time with one row more than the `batch` rows stepping now (admission's
        question): `estimate(batch + 1)`, kept between `batch`'s own figure and that figure
        scaled per row (a step costs no less with one more row, and no more per row) when
        `batch`'s figure is the fresher. A size the loop has not stepped since keeps the
        cadence of whatever it last saw (a burst of prefills, another load), and while
        admission keeps that row out nothing measures it again: a stale 85 ms at 15 rows,
        against 20-45 ms at 14, refused every 15th stream of a 16-stream burst (stop 37)."""
        after = self.estimate(batch + 1)
        now = self._by_size.get(batch)
        if after is None or now is None or \
                self._last_seen.get(batch + 1, 0) > self._last_seen[batch]:
            return after
        return min(max(after, now), now * (batch + 1) / batch)


class Decision(enum.Enum):
    ADMIT = "admit"
    WAIT = "wait"
    REFUSE = "refuse"


@dataclass(frozen=True)
class StreamView:
    """What the pacer needs of a running row. `margin`: its listener's margin now plus the
    audio of frames made and not yet sent (None before its first audio); `frames_left`: frames
    it may still make (0 for a slot waiting for text: it takes no step time); `streaming`: a
    stream we pace; `yields`: a non-streaming request or a background job (a job segment)."""

    margin: float | None
    frames_left: int
    streaming: bool = True
    yields: bool = False


class Pacer:
    """The decisions of the module docstring, for one step loop. With `EngineConfig.pacing`
    False every decision is the fixed schedule's (main's behaviour before issue 18): chunks of
    `chunk_frames`, every ready row steps, prefills whenever pending, admission whenever a
    slot is free. `clock`: the seconds the codec lag's age is counted in (`chunk_left`'s
    times are on it; tests pass their own)."""

    def __init__(self, config: EngineConfig, clock: Callable[[], float] = time.perf_counter
                 ) -> None:
        self.enabled = config.pacing
        self.reserve_s = config.pacing_reserve_s
        self.min_chunk = config.pacing_min_chunk_frames
        self.floor_s = config.pacing_floor_s
        self.ahead_s = config.pacing_ahead_s
        self.headroom_s = config.admission_headroom_s
        self.bound_s = config.first_audio_bound_s if config.pacing else None
        self.steps = StepModel()
        # seconds from a chunk's being due to its leaving
        self.codec_lag = StepModel(half_life_s=LAG_HALF_LIFE_S, clock=clock)
        # seconds from the codec's starting on a step's due chunks to one of them leaving:
        # the lag a chunk sees on an idle codec, what `lag_s` falls back to
        self.codec_decode = StepModel()

    # ------------------------------------------------------------------ the chunk schedule
    def chunk_due(self, pending: int, first: bool, margin: float | None, batch: int,
                  first_frames: int, max_frames: int) -> bool:
        """Whether a stream's `pending` frames go out as a chunk now. `margin`: its
        listener's margin now (audio sent minus playback since its first audio; None before
        the first chunk has left)."""
        if pending <= 0:
            return False
        if first:
            return pending >= self.first_target(first_frames, batch)
        if not self.enabled:
            return pending >= max_frames
        if margin is None:  # the first chunk has not left yet: send what there is
            return pending >= min(first_frames, max_frames)
        return pending >= self.chunk_target(margin, batch, max_frames)

    def first_target(self, first_frames: int, batch: int) -> int:
        """The frames of a stream's first chunk: `first_frames`, or more while the loop steps
        so slowly that the second chunk (the chunk floor's frames, one step each, then the
        codec's lag) would come after the first had played with less than `floor_s` to
        spare: the listener would run dry right after its first word (at 60-80 ms a step,
        half the gapped streams on a slow machine gapped 0.24 s in, after a 3-frame first
        chunk). Without a floor (`pacing_min_chunk_frames` 1) the next frame follows at once
        and the first chunk stays as set."""
        if not self.enabled or self.min_chunk <= 1:
            return first_frames
        step = self.steps.estimate(batch)
        if step is None:
            return first_frames
        second = self.second_chunk_s(self.min_chunk, step) + self.floor_s
        return max(first_frames, math.ceil(second / FRAME_S))

    def second_chunk_s(self, frames: int, step: float) -> float:
        """Seconds from a stream's first chunk leaving to its second leaving, when the second
        holds `frames` frames: one step each, then the codec's lag."""
        return frames * step + self.lag_s()

    def chunk_left(self, due_at: float, decode_started: float, left: float) -> None:
        """A chunk due at `due_at` left at `left`; the codec started on its step's chunks at
        `decode_started` (codec thread)."""
        self.codec_lag.observe(1, left - due_at, now=left)
        self.codec_decode.observe(1, left - decode_started)

    def lag_s(self, now: float | None = None) -> float:
        """The codec's lag for a chunk due now: the lag chunks have been seeing, and the
        longer none has left, the closer to what a chunk sees on an idle codec (the queue a
        lag measured under load holds is gone by then). Read as it was last measured, a lag
        from sixteen in-phase streams' 24-frame chunks queued together (0.38 s) outlived
        their burst by seconds; admission took it for the lag of a newcomer's 3-frame second
        chunk and kept 15 of the next 16 requests waiting until it refused them (stop 39)."""
        lag = self.codec_lag.estimate(1)
        if lag is None:
            return 0.0
        idle = min(lag, self.codec_decode.estimate(1) or 0.0)
        return idle + (lag - idle) * self.codec_lag.kept(1, now)

    def chunk_target(self, margin: float, batch: int, max_frames: int) -> int:
        """The frames a stream may gather into its next chunk with `margin` left: as many as
        can be made (one step each, then the codec's lag) while the listener keeps
        `reserve_s`; one while it has less; at most `max_frames`. A stream made faster than
        real time gains margin with every chunk, so its chunks grow; a stream that gains none
        is sent every frame as soon as it is made."""
        step = self.steps.estimate(batch) or FRAME_S
        lag = self.lag_s()
        room = (margin - self.reserve_s - lag) / max(step, 1e-3)
        return max(min(self.min_chunk, max_frames), min(max_frames, int(room)))

    # ------------------------------------------------------------------ urgency
    def urgent(self, views: Sequence[StreamView]) -> bool:
        """Some started stream is below the floor."""
        return self.enabled and any(
            v.streaming and not v.yields and v.margin is not None and v.margin < self.floor_s
            for v in views)

    def hold(self, views: Sequence[StreamView]) -> list[bool]:
        """Rows that sit out this step: while a stream is urgent, background rows
        (non-streaming requests, job segments) and streams more than `ahead_s` ahead of their
        listener, so the urgent ones step sooner (never every row)."""
        if not self.urgent(views):
            return [False] * len(views)
        held = [v.frames_left > 0 and (v.yields or (v.margin is not None and v.margin > self.ahead_s))
                for v in views]
        return held if not all(held) else [False] * len(views)

    def deadline(self, job: Job, now: float) -> float:
        """When the job's listener runs dry (before its first audio: its submission plus the
        first-audio bound); non-streaming and background jobs come last."""
        clock = job.clock
        if job.chunking is None or job.background:
            return float("inf")
        if clock.first_audio_at is None:
            return job.arrived_at + (self.bound_s if self.bound_s is not None else 1.0)
        return clock.first_audio_at + clock.sent_s

    def prefill_allowed(self, views: Sequence[StreamView], oldest_wait_s: float = 0.0) -> bool:
        """A prefill (or a long prompt's next chunk) runs only while no stream is urgent, or
        once the longest-waiting admitted job has used half its first-audio bound (its own
        listener has a deadline too: the gate must not starve it; without a bound, after
        `PREFILL_WAIT_S`: on an overloaded machine some stream is always urgent)."""
        opens = 0.5 * self.bound_s if self.bound_s is not None else PREFILL_WAIT_S
        if oldest_wait_s >= opens:
            return True
        return not self.urgent(views)

    # ------------------------------------------------------------------ admission
    def admit(self, views: Sequence[StreamView], job_frames: int, first_frames: int,
              waited_s: float, refusable: bool) -> Decision:
        """Whether one more job (about `job_frames` frames) goes into a free slot now.
        `refusable`: a foreground stream whose text is all there (one that is refused after
        the bound); any other job waits while the projection says no, and goes in once it
        has waited the bound (it then yields its steps to urgent streams)."""
        if self.bound_s is None:
            return Decision.ADMIT
        stepping = [v for v in views if v.frames_left > 0]
        if not stepping or self.projected_ok(stepping, job_frames, first_frames):
            return Decision.ADMIT
        if waited_s >= self.bound_s:
            return Decision.REFUSE if refusable else Decision.ADMIT
        return Decision.WAIT

    def overdue(self, waited_s: float, refusable: bool) -> bool:
        """A job still waiting for a free slot is refused once it has waited the bound."""
        return refusable and self.bound_s is not None and waited_s >= self.bound_s

    def projected_ok(self, views: Sequence[StreamView], job_frames: int, first_frames: int) -> bool:
        """With one more row stepping, every started stream keeps `headroom_s` after the
        newcomer's prefill, and no stream (the newcomer included) runs dry over the frames it
        has left (streams lose margin only where a step takes longer than a frame's audio),
        nor between its first chunk and its second, which takes the chunk floor's steps and
        the codec's lag (`second_chunk_in_time`). Before any step was measured: yes."""
        step = self.steps.one_more(len(views))
        if step is None:
            return True
        gain = FRAME_S - step  # margin a stream gains (or loses) per step
        prefill = self.steps.estimate(1) or 0.0  # the newcomer's prefill: about one step
        start = first_frames * FRAME_S  # a listener's margin at its first audio
        for v in views:
            if not v.streaming or v.yields:
                continue
            drift = min(0.0, gain * v.frames_left)
            if v.margin is None:  # not playing yet: it must not run dry once it does
                if start + drift < 0 or not self.second_chunk_in_time(start, step, v.frames_left):
                    return False
                continue
            after = v.margin - prefill  # just after the newcomer's prefill
            # it must not run dry then; and a stream losing margin must keep the headroom
            # (one gaining margin need not have it yet: right after a one-frame first chunk
            # every listener has under 80 ms, and demanding 150 ms there refused newcomers
            # even at 1 req/s)
            if after < 0 or after + drift < min(self.headroom_s, after):
                return False
        return (start + min(0.0, gain * job_frames) >= 0
                and self.second_chunk_in_time(start, step, job_frames - first_frames))

    def second_chunk_in_time(self, start: float, step: float, frames_after_first: int) -> bool:
        """Whether a listener's first chunk (`start` seconds of audio) lasts until its second
        is made: at least the chunk floor's steps (fewer if the stream has no more), then the
        codec's lag. A stream that gains margin in the long run (steps under 80 ms) can still
        run dry here: 3-frame first chunks and a 3-frame floor (the CPU profile) at 75 ms a
        step and 40 ms of lag leave the listener 25 ms short. Without this check, every
        admitted stream that gapped at 12 req/s over HTTP did so 0.24 s in, right after its
        first chunk (docs/streaming.md, "Admission")."""
        frames = max(0, min(self.min_chunk, frames_after_first))
        if frames == 0:
            return True
        return start >= self.second_chunk_s(frames, step)


def expected_frames(job: Job) -> int:
    """About how many frames a waiting job will make (admission's projection): its forced
    length, else its text at ~15 characters per second of speech, within its frame cap."""
    p = job.prepared
    spoken = round(len(p.text) / 15.0 / FRAME_S)
    return max(1, min(p.max_new_tokens - 1, max(p.min_frames, spoken)))


def view(s: SlotState, now: float) -> StreamView:
    """A running row as the pacer sees it."""
    job = s.job
    if s.pending is None and s.waits_for_text:
        return StreamView(margin=None, frames_left=0, streaming=False)
    margin = job.clock.margin(now)
    if margin is not None:
        margin += (len(s.codes) - s.emitted) * FRAME_S
    streaming = job.chunking is not None
    left = max(1, min(s.cap, expected_frames(job)) - job.frames)  # running: at least one more
    return StreamView(margin=margin, frames_left=left, streaming=streaming,
                      yields=not streaming or job.background)


def newcomer(job: Job) -> StreamView:
    """A job just admitted, as the next admission's projection sees it."""
    streaming = job.chunking is not None
    return StreamView(margin=None, frames_left=expected_frames(job), streaming=streaming,
                      yields=not streaming or job.background)
