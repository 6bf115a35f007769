"""The pacer (deployments/engine/pacing.py) as a spec: the chunk schedule keeps a listener
fed, urgent streams step first, prefills wait for them, and admission refuses what it cannot
keep. Plain numbers, no model: the step loop feeds the pacer measured step times and rows."""

from __future__ import annotations

from deployments.engine.pacing import (
    FRAME_S,
    PREFILL_WAIT_S,
    Decision,
    Pacer,
    StreamClock,
    StreamView,
)
from deployments.engine.types import EngineConfig

LAG = 0.01  # codec thread: from a chunk being due to its leaving


def pacer(clock=None, **overrides) -> Pacer:
    config = EngineConfig(model="unused", **{"pacing": True, **overrides})
    return Pacer(config) if clock is None else Pacer(config, clock=clock)


def listen(p: Pacer, step_times: list[float], first: int = 1, largest: int = 6):
    """One stream through the schedule: a frame per step, chunks as `p` says, each leaving
    LAG after it is due; returns its listener's clock and the chunk sizes."""
    clock, t, pending, sizes = StreamClock(), 0.0, 0, []
    for dt in step_times:
        t += dt
        pending += 1
        p.steps.observe(1, dt)
        margin = clock.margin(t) if sizes else None
        if p.chunk_due(pending, not sizes, margin, 1, first, largest):
            p.codec_lag.observe(1, LAG)
            clock.sent(pending * FRAME_S, t + LAG)
            sizes.append(pending)
            pending = 0
    return clock, sizes


def listen_behind_codec(step_times: list[float], lag: float, first: int = 3,
                        largest: int = 48):
    """`listen` as the engine runs it: a chunk leaves `lag` after it is due (the codec
    thread's queue, here several steps long) and the pacer learns that lag when it leaves
    (`Pacer.chunk_left`, on the simulation's clock); the next chunk is sized on
    `StreamClock.margin_once_sent`, what has been handed to the codec, as
    `OutputStage.due_chunks` does. Returns the listener's clock and the chunk sizes."""
    now = 0.0
    p = pacer(clock=lambda: now, pacing_min_chunk_frames=3)
    clock, pending, sizes, handed_s, in_codec = StreamClock(), 0, [], 0.0, []
    for dt in step_times:
        now += dt
        while in_codec and in_codec[0][1] <= now:
            due_at, left_at, audio_s = in_codec.pop(0)
            clock.sent(audio_s, left_at)
            p.chunk_left(due_at, due_at, left_at)
        pending += 1
        p.steps.observe(1, dt)
        margin = clock.margin_once_sent(handed_s, now) if sizes else None
        if p.chunk_due(pending, not sizes, margin, 1, first, largest):
            in_codec.append((now, now + lag, pending * FRAME_S))
            handed_s += pending * FRAME_S
            sizes.append(pending)
            pending = 0
    for _, left_at, audio_s in in_codec:
        clock.sent(audio_s, left_at)
    return clock, sizes


def test_a_chunk_still_in_the_codecs_queue_counts_toward_the_next_chunks_size():
    # the next chunk leaves after it, so the listener has it by then. Counted as sent only
    # once it had left, chunks behind a 6-step lag stayed small here ([3, 3, 3, 3, 16, 40]),
    # and on the CPU demo a 13-frame chunk was followed by a 6-frame one (16 streams)
    for lag in (0.06, 0.12):  # 3 and 6 steps
        clock, sizes = listen_behind_codec([0.02] * 100, lag)
        assert sizes == sorted(sizes) and sizes[-1] == 48  # each chunk at least the last
        assert clock.late_chunks == 0
    clock, _ = listen_behind_codec([0.02] * 40 + [0.4] + [0.02] * 60, 0.12)
    assert clock.late_chunks == 0


def test_chunks_start_at_one_frame_and_grow_to_the_largest_as_the_margin_allows():
    clock, sizes = listen(pacer(), [0.03] * 80)  # 30 ms a frame: faster than real time
    assert sizes[0] == 1 and sizes[1] == 1  # the listener has 80 ms: the next frame at once
    assert max(sizes) == 6 and sizes.index(6) > 2  # grew as the margin built up
    assert clock.late_chunks == 0


def test_the_fixed_schedule_runs_the_listener_dry_after_its_first_chunk():
    # main's schedule before issue 18 (pacing off): 1 frame, then 6 that take 180 ms to make
    clock, sizes = listen(pacer(pacing=False), [0.03] * 80)
    assert sizes[:3] == [1, 6, 6]
    assert clock.late_chunks >= 1


def test_a_step_time_spike_is_absorbed_by_the_margin_the_schedule_built():
    steps = [0.03] * 40 + [0.4] + [0.03] * 40  # one 400 ms stall mid-stream
    clock, _ = listen(pacer(), steps)
    assert clock.late_chunks == 0


def test_a_stream_made_slower_than_real_time_is_sent_every_frame():
    # nothing to gain by holding frames back: each goes out as soon as it is made
    _, sizes = listen(pacer(), [0.09] * 30)
    assert set(sizes) == {1}


URGENT = StreamView(margin=0.02, frames_left=40)
FAR_AHEAD = StreamView(margin=2.0, frames_left=40)
BACKGROUND = StreamView(margin=None, frames_left=40, streaming=False, yields=True)
COMFORTABLE = StreamView(margin=0.5, frames_left=40)
WAITING_FOR_TEXT = StreamView(margin=None, frames_left=0, streaming=False)


def test_while_a_stream_is_urgent_background_and_far_ahead_rows_sit_out_the_step():
    p = pacer()
    rows = [URGENT, FAR_AHEAD, BACKGROUND, COMFORTABLE, WAITING_FOR_TEXT]
    assert p.hold(rows) == [False, True, True, False, False]
    assert p.hold([FAR_AHEAD, BACKGROUND, COMFORTABLE]) == [False] * 3  # nobody urgent
    assert pacer(pacing=False).hold(rows) == [False] * 5


def test_a_prefill_waits_while_a_stream_is_below_the_floor():
    p = pacer()
    assert not p.prefill_allowed([COMFORTABLE, URGENT])
    assert p.prefill_allowed([COMFORTABLE, FAR_AHEAD, BACKGROUND, WAITING_FOR_TEXT])
    assert pacer(pacing=False).prefill_allowed([URGENT])
    # but not past half of the waiting job's own first-audio bound: its listener has a deadline
    bounded = pacer(first_audio_bound_s=0.5)
    assert not bounded.prefill_allowed([URGENT], oldest_wait_s=0.2)
    assert bounded.prefill_allowed([URGENT], oldest_wait_s=0.25)
    # without a bound it still opens: a saturated loop always has some urgent stream
    assert not p.prefill_allowed([URGENT], oldest_wait_s=0.1)
    assert p.prefill_allowed([URGENT], oldest_wait_s=PREFILL_WAIT_S)


def _measured(p: Pacer, step_1: float, step_2: float) -> Pacer:
    p.steps.observe(1, step_1)
    p.steps.observe(2, step_2)
    return p


def test_a_newcomer_goes_in_while_the_running_streams_keep_their_headroom():
    p = _measured(pacer(first_audio_bound_s=0.5), 0.02, 0.03)
    assert p.admit([COMFORTABLE], job_frames=50, first_frames=1, waited_s=0.0,
                   refusable=True) is Decision.ADMIT
    # a stream just started (one frame sent, under the headroom) that still gains margin
    # with the newcomer beside it does not keep the newcomer out
    just_started = StreamView(margin=0.07, frames_left=50)
    assert p.admit([just_started], job_frames=50, first_frames=1, waited_s=0.0,
                   refusable=True) is Decision.ADMIT
    # but one that would run dry during the newcomer's prefill does
    assert p.admit([StreamView(margin=0.01, frames_left=50)], job_frames=50, first_frames=1,
                   waited_s=0.0, refusable=True) is Decision.WAIT


def test_a_newcomer_that_would_make_a_stream_stutter_waits_then_is_refused():
    # two rows step slower than real time: the running stream would run dry
    p = _measured(pacer(first_audio_bound_s=0.5), 0.05, 0.2)
    args = dict(job_frames=50, first_frames=1)
    assert p.admit([COMFORTABLE], **args, waited_s=0.1, refusable=True) is Decision.WAIT
    assert p.admit([COMFORTABLE], **args, waited_s=0.6, refusable=True) is Decision.REFUSE
    # a non-streaming or background job is never refused: past the bound it goes in and yields
    assert p.admit([COMFORTABLE], **args, waited_s=0.6, refusable=False) is Decision.ADMIT
    # nothing stepping (idle, or only slots waiting for text): always in
    assert p.admit([WAITING_FOR_TEXT], **args, waited_s=0.0, refusable=True) is Decision.ADMIT


def test_a_newcomer_whose_second_chunk_would_come_after_its_first_has_played_waits():
    # the CPU profile's schedule: 3-frame first chunks (240 ms) and a 3-frame floor. At 75 ms
    # a step every stream gains margin in the long run, but a newcomer's second chunk takes 3
    # steps and the codec's 40 ms: 265 ms, 25 ms after its first chunk has played
    def loaded(step: float) -> Pacer:
        p = pacer(first_audio_bound_s=0.5, pacing_min_chunk_frames=3)
        p.steps.observe(1, step)
        p.steps.observe(2, step)
        p.codec_lag.observe(1, 0.04)
        return p

    running = [StreamView(margin=0.6, frames_left=40)]
    args = dict(job_frames=50, first_frames=3, refusable=True)
    assert loaded(0.075).admit(running, **args, waited_s=0.0) is Decision.WAIT
    assert loaded(0.075).admit(running, **args, waited_s=0.5) is Decision.REFUSE
    # at 50 ms a step the second chunk is out at 190 ms: in
    assert loaded(0.05).admit(running, **args, waited_s=0.0) is Decision.ADMIT
    # one admitted and not yet heard is held to it as well, and a job that fits in its
    # first chunk has no second to wait for
    assert loaded(0.075).admit([StreamView(margin=None, frames_left=40)], job_frames=3,
                               first_frames=3, refusable=True, waited_s=0.0) is Decision.WAIT
    assert loaded(0.075).admit(running, job_frames=3, first_frames=3, refusable=True,
                               waited_s=0.0) is Decision.ADMIT


def test_a_codec_lag_measured_under_a_burst_does_not_outlive_it():
    # sixteen in-phase streams' 24-frame chunks queued together at the codec: the last left
    # 380 ms after it was due, though decoding took 30 ms. Right after, a newcomer's second
    # chunk (3 steps of 15 ms, then that lag) would come after its 240 ms first chunk had
    # played: it waits. Two seconds later, with no chunk since, the queue is long gone
    now = [100.0]  # the pacer's clock (perf_counter seconds)
    p = pacer(first_audio_bound_s=0.5, pacing_min_chunk_frames=3, clock=lambda: now[0])
    p.steps.observe(1, 0.015)
    p.steps.observe(2, 0.015)
    running = [StreamView(margin=None, frames_left=190)]
    args = dict(job_frames=200, first_frames=3, refusable=True, waited_s=0.0)
    p.chunk_left(due_at=now[0] - 0.38, decode_started=now[0] - 0.03, left=now[0])
    assert abs(p.lag_s() - 0.38) < 1e-9
    assert p.admit(running, **args) is Decision.WAIT
    now[0] += 0.5
    assert abs(p.lag_s() - (0.03 + 0.35 / 2)) < 1e-9  # half-way to the idle codec's
    now[0] += 1.5
    assert abs(p.lag_s() - (0.03 + 0.35 / 16)) < 1e-9
    assert p.admit(running, **args) is Decision.ADMIT
    # the first chunk to leave then weighs 15/16 against the old figure, not a fifth
    p.chunk_left(due_at=now[0] - 0.02, decode_started=now[0] - 0.02, left=now[0])
    assert abs(p.codec_lag.estimate(1) - (0.38 + 15 / 16 * (0.02 - 0.38))) < 1e-9


def test_a_size_measured_long_ago_does_not_keep_its_row_out_for_good():
    # 15 rows once stepped slowly (a burst of prefills); since then admission kept the
    # loop at 14 rows, which step at 30 ms: a 15th row costs no more per row than those
    p = pacer(first_audio_bound_s=0.5)
    p.steps.observe(1, 0.02)
    p.steps.observe(15, 0.085)
    for _ in range(20):
        p.steps.observe(14, 0.03)
    assert p.steps.estimate(15) == 0.085  # what was measured at 15 stays as measured
    assert abs(p.steps.one_more(14) - 0.03 * 15 / 14) < 1e-9
    running = [StreamView(margin=0.2, frames_left=40)] * 14
    assert p.admit(running, job_frames=50, first_frames=3, waited_s=0.0,
                   refusable=True) is Decision.ADMIT
    # measured again after 14 (the loop did step 15 rows since): that figure stands
    p.steps.observe(15, 0.09)
    assert p.steps.one_more(14) == p.steps.estimate(15)
    assert p.admit(running, job_frames=50, first_frames=3, waited_s=0.6,
                   refusable=True) is Decision.REFUSE


def test_one_more_row_never_steps_faster_than_the_rows_stepping_now():
    p = pacer(first_audio_bound_s=0.5)
    p.steps.observe(5, 0.01)  # a quiet minute, long ago
    for _ in range(20):
        p.steps.observe(4, 0.06)  # contention now
    assert p.steps.one_more(4) == 0.06


def test_without_a_bound_or_with_pacing_off_every_free_slot_is_taken():
    for p in (pacer(), pacer(pacing=False, first_audio_bound_s=0.5)):
        _measured(p, 0.05, 0.2)
        assert p.admit([COMFORTABLE], job_frames=50, first_frames=1, waited_s=9.0,
                       refusable=True) is Decision.ADMIT
        assert not p.overdue(9.0, refusable=True)


def test_a_stream_still_without_a_slot_is_refused_once_it_has_waited_the_bound():
    p = pacer(first_audio_bound_s=0.5)
    assert not p.overdue(0.4, refusable=True)
    assert p.overdue(0.5, refusable=True)
    assert not p.overdue(5.0, refusable=False)


def test_a_chunk_floor_keeps_later_chunks_at_least_that_many_frames():
    # every chunk crosses the graph (a hop, an encode, a write): with a floor, a thin margin
    # no longer sends each frame alone (the CPU profile: 3-frame first chunks and floor)
    floor = dict(pacing_min_chunk_frames=3)
    clock, sizes = listen(pacer(**floor), [0.05] * 60, first=3)
    assert min(sizes) == 3 and clock.late_chunks == 0
    _, sizes = listen(pacer(**floor), [0.09] * 30, first=3)  # slower than real time
    assert min(sizes[1:]) == 3
    _, sizes = listen(pacer(**floor), [0.03] * 80, first=3)
    assert max(sizes) == 6 and min(sizes) >= 3


def test_with_a_chunk_floor_the_first_chunk_lasts_until_the_second_can_follow():
    # at 75 ms a step (barely faster than real time) a 3-frame first chunk plays out in
    # 240 ms while the floor's 3 frames take 225 ms and the codec's lag: the listener ran dry
    # right after its first word. The first chunk takes a frame more there (LAG here is
    # 10 ms; with 40 ms it takes two); on a fast loop it stays at first_chunk_frames, so
    # first audio is no later
    floor = dict(pacing_min_chunk_frames=3)
    clock, sizes = listen(pacer(**floor), [0.075] * 60, first=3)
    assert sizes[0] == 4 and clock.late_chunks == 0
    clock, sizes = listen(pacer(**floor), [0.04] * 60, first=3)
    assert sizes[0] == 3 and clock.late_chunks == 0
    # without a floor the next frame follows the first at once: first chunks stay as set
    _, sizes = listen(pacer(), [0.075] * 30)
    assert sizes[0] == 1


def test_the_first_audio_bound_counts_from_the_services_arrival():
    import time

    from deployments.engine.request import Job, PreparedRequest

    def job(arrived_at):
        return Job(PreparedRequest(text="Hi.", language="english", speaker=None,
                                   instruct="", voice_prompt=None, seed=0,
                                   max_new_tokens=8, arrived_at=arrived_at), chunking=None)

    here = job(None)
    assert here.arrived_at == here.submitted_at
    queued = job(time.time() - 0.4)  # it waited 0.4 s in front of the engine
    assert 0.35 < queued.submitted_at - queued.arrived_at < 5
