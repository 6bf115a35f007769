"""Engine streaming on the tiny checkpoints: streamed == non-streamed, no clicks, chunk sizes,
cancellation within a frame, the lock handed back, errors before anything runs."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time

import numpy as np
import pytest

from deployments.engine import (
    ModelKind,
    StreamCancelled,
    StreamChunking,
    SynthesisRequest,
    TTSEngine,
    UnsupportedValueError,
)
from deployments.engine.types import EngineOverloadedError

TEXT = "Hello world, this is a streaming test."
FRAME = 1920
CHUNKING = StreamChunking(first_chunk_frames=1, chunk_frames=3, left_context_frames=25)


def _long_seed(engine: TTSEngine, speaker: str, frames: int = 14) -> int:
    """A seed for which the random checkpoint makes at least `frames` frames (it stops at
    random; seeded runs are deterministic, so this picks the same seed every time)."""
    for seed in range(100):
        req = SynthesisRequest(text=TEXT, speaker=speaker, seed=seed, max_new_tokens=frames + 1)
        if engine.synthesize([req])[0].frames >= frames:
            return seed
    raise AssertionError("no seed in 0..99 made a long enough utterance")


def _reference() -> tuple[np.ndarray, int]:
    sr = 16_000
    t = np.arange(2 * sr) / sr
    wav = 0.3 * np.sin(2 * np.pi * 180 * t) + 0.05 * np.random.default_rng(0).standard_normal(t.size)
    return wav.astype(np.float32), sr


def _requests(kind: ModelKind, engine: TTSEngine) -> list[SynthesisRequest]:
    if kind is ModelKind.CUSTOM_VOICE:
        return [SynthesisRequest(text=TEXT, speaker="vivian", seed=s, max_new_tokens=40)
                for s in (1, 7)]
    if kind is ModelKind.VOICE_DESIGN:
        return [SynthesisRequest(text=TEXT, instruct="A calm low voice.", seed=s,
                                 max_new_tokens=40) for s in (1, 7)]
    icl = engine.build_voice_prompt(*_reference(), ref_text="Reference words here.")
    xvec = engine.build_voice_prompt(*_reference(), x_vector_only=True)
    return [SynthesisRequest(text=TEXT, voice_prompt=icl, seed=3, max_new_tokens=40),
            SynthesisRequest(text=TEXT, voice_prompt=xvec, seed=3, max_new_tokens=40)]


@pytest.mark.parametrize("kind", list(ModelKind), ids=lambda k: k.value)
def test_streamed_pcm_equals_non_streamed_pcm(kind, request):
    engine = request.getfixturevalue({ModelKind.CUSTOM_VOICE: "cv", ModelKind.VOICE_DESIGN: "vd",
                                      ModelKind.BASE: "base"}[kind])
    for req in _requests(kind, engine):
        whole = engine.synthesize([req])[0]
        chunks = list(engine.stream(req, CHUNKING))
        assert chunks[-1].final and not any(c.final for c in chunks[:-1])
        streamed = np.concatenate([c.audio for c in chunks])
        assert streamed.size == whole.audio.size
        assert np.abs(streamed - whole.audio).max() <= 1e-4
        assert chunks[-1].total_frames == whole.frames
        assert [c.index for c in chunks] == list(range(len(chunks)))


@pytest.mark.parametrize("pacing", [False, True], ids=["fixed", "paced"])
def test_chunk_sizes_follow_the_settings_and_boundaries_add_no_clicks(cv, tiny_engine, pacing):
    # fixed schedule (pacing off): first_chunk_frames, then chunk_frames each; paced: the
    # first is first_chunk_frames and later ones follow the listener's margin, never larger
    # than chunk_frames (deployments/engine/pacing.py)
    engine = tiny_engine(ModelKind.CUSTOM_VOICE, pacing=True) if pacing else cv
    req = SynthesisRequest(text=TEXT, speaker="ryan", seed=_long_seed(cv, "ryan"),
                           max_new_tokens=15)
    try:
        chunks = list(engine.stream(req, StreamChunking(first_chunk_frames=2, chunk_frames=5)))
    finally:
        if engine is not cv:
            engine.close()
    sizes = [c.audio.size // FRAME for c in chunks]
    assert sizes[0] == 2 and len(chunks) >= 3
    if pacing:
        assert all(1 <= s <= 5 for s in sizes[1:-1])
    else:
        assert all(s == 5 for s in sizes[1:-1])
    assert 0 <= sizes[-1] <= 5
    audio = np.concatenate([c.audio for c in chunks])
    jumps = np.abs(np.diff(audio))
    bounds = np.cumsum([c.audio.size for c in chunks])[:-1]
    bounds = bounds[(bounds > 0) & (bounds < audio.size)]
    inside = np.delete(jumps, bounds - 1)
    assert bounds.size > 0
    assert jumps[bounds - 1].max() <= inside.max()


def test_first_chunk_arrives_before_generation_ends(cv):
    req = SynthesisRequest(text=TEXT, speaker="vivian", seed=_long_seed(cv, "vivian"),
                           max_new_tokens=40)
    with cv.stream(req, StreamChunking(first_chunk_frames=1, chunk_frames=4)) as stream:
        first = next(stream)
        frames_at_first = stream.frames
        rest = list(stream)
    total = (rest[-1] if rest else first).total_frames
    assert first.frames == 1 and not first.final
    assert frames_at_first < total  # audio left while frames were still being made


def test_closing_a_stream_stops_generation_within_a_frame_and_frees_the_engine(cv):
    stats = cv.stream_stats
    cancelled = stats.streams_cancelled
    seed = _long_seed(cv, "vivian")
    req = SynthesisRequest(text=TEXT, speaker="vivian", seed=seed, max_new_tokens=2000)
    stream = cv.stream(req, StreamChunking(first_chunk_frames=1, chunk_frames=1))
    assert not next(stream).final
    stream.close()
    after_close = stats.frames_generated
    time.sleep(0.3)
    assert stats.frames_generated - after_close <= 1
    assert stats.streams_cancelled == cancelled + 1 and stats.active == 0
    assert stream.frames < 2000 - 1
    # the lock is free: the next request runs at once
    done = threading.Event()
    threading.Thread(target=lambda: (cv.synthesize([SynthesisRequest(
        text="Hi.", speaker="vivian", seed=1, max_new_tokens=4)]), done.set())).start()
    assert done.wait(30)


def test_the_consumer_sees_cancellation_as_an_error_when_it_keeps_reading(cv):
    seed = _long_seed(cv, "vivian")
    req = SynthesisRequest(text=TEXT, speaker="vivian", seed=seed, max_new_tokens=2000)
    stream = cv.stream(req, StreamChunking(first_chunk_frames=1, chunk_frames=1))
    next(stream)
    stream._runner.cancel()
    with pytest.raises(StreamCancelled):
        for _ in range(10_000):
            next(stream)


def test_concurrent_streams_each_equal_their_non_streamed_output(cv):
    reqs = [SynthesisRequest(text=TEXT, speaker="serena", seed=s, max_new_tokens=12)
            for s in range(4)]
    wholes = [cv.synthesize([r])[0].audio for r in reqs]
    results: list[np.ndarray | BaseException | None] = [None] * len(reqs)

    def run(i: int) -> None:
        try:
            results[i] = np.concatenate([c.audio for c in cv.stream(reqs[i], CHUNKING)])
        except BaseException as exc:  # noqa: BLE001 - reported below
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(reqs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    for whole, got in zip(wholes, results, strict=True):
        assert isinstance(got, np.ndarray), got
        assert got.size == whole.size and np.abs(got - whole).max() <= 1e-4


def test_a_bad_request_raises_before_anything_runs(cv):
    started = cv.stream_stats.streams_started
    with pytest.raises(UnsupportedValueError) as err:
        cv.stream(SynthesisRequest(text=TEXT, speaker="nobody"))
    assert err.value.param == "speaker" and cv.stream_stats.streams_started == started


def test_async_stream_matches_and_closes(cv):
    asyncio.run(_async_stream_matches_and_closes(cv))


async def _async_stream_matches_and_closes(cv: TTSEngine) -> None:
    req = SynthesisRequest(text=TEXT, speaker="aiden", seed=9, max_new_tokens=30)
    whole = cv.synthesize([req])[0]
    chunks = [c async for c in cv.astream(req, CHUNKING)]
    assert np.abs(np.concatenate([c.audio for c in chunks]) - whole.audio).max() <= 1e-4
    long = SynthesisRequest(text=TEXT, speaker="vivian", seed=_long_seed(cv, "vivian"),
                            max_new_tokens=2000)
    stream = cv.astream(long,
                        StreamChunking(first_chunk_frames=1, chunk_frames=1))
    await stream.__anext__()
    await stream.aclose()
    stream._runner.join(30)
    assert cv.stream_stats.active == 0


def test_a_stream_the_loop_cannot_keep_ahead_of_its_listener_is_refused_after_its_bound(tiny_engine):
    # admission by what can be kept (deployments/engine/pacing.py): with two rows measured
    # slower than real time, a second stream would make the first one stutter, so it waits
    # its first-audio bound and is refused (503 + Retry-After at the ingress), never admitted
    engine = tiny_engine(ModelKind.CUSTOM_VOICE, pacing=True, first_audio_bound_s=0.2)
    try:
        steps = engine.loop.pacer.steps
        steps.estimate = lambda batch: 0.05 if batch <= 1 else 0.2
        # admission's figure for one row more (the loop's own one-row cadence would bound it)
        steps.one_more = lambda batch: steps.estimate(batch + 1)
        playing = SynthesisRequest(text=TEXT, speaker="vivian", seed=1, min_frames=400,
                                   max_new_tokens=401)
        newcomer = SynthesisRequest(text=TEXT, speaker="ryan", seed=2, min_frames=20,
                                    max_new_tokens=21)
        with engine.stream(playing) as first:
            next(first)
            with pytest.raises(EngineOverloadedError) as refused:
                next(engine.stream(newcomer))
            assert refused.value.retry_after_s >= 1
            assert first.frames < 400  # refused while the first was still playing
        assert engine.loop.loop_stats.refused == 1
        # a non-streaming request is never refused: it waits and then yields its steps
        assert engine.synthesize([newcomer])[0].frames >= 20
    finally:
        engine.close()


def test_warm_up_measures_the_step_time_of_one_row_and_of_every_slot(tiny_engine):
    # admission projects margins from step times by batch size: measured only at one row,
    # it extrapolated a row's time per row and refused 13 of a burst of 16 streams on an
    # idle 16-slot replica, so the warm-up measures the sizes a burst reaches first
    with contextlib.closing(tiny_engine(ModelKind.CUSTOM_VOICE, pacing=True,
                                        first_audio_bound_s=0.5, max_slots=8,
                                        max_waiting=8)) as engine:
        assert engine.loop.pacer.steps.measured == {}
        engine.warmup()
        assert set(engine.loop.pacer.steps.measured) == {1, 8}
        assert engine.loop.pacer.bound_s == 0.5  # admission is back on after it


def test_a_burst_of_streams_on_an_idle_paced_engine_runs_together(tiny_engine):
    # every slot free and the loop fast enough: the whole burst is admitted at once (each
    # stream's first audio comes before any stream ends), none waits its bound or is refused.
    # Fails too when the loop counts its wait between two requests as a step (the warm-up's
    # back-to-back batches then measure 50-110 ms "steps")
    first, ended = [0.0] * 8, [0.0] * 8
    with contextlib.closing(tiny_engine(ModelKind.CUSTOM_VOICE, pacing=True,
                                        first_audio_bound_s=2.0, max_slots=8,
                                        max_waiting=8)) as engine:
        engine.warmup()

        def listen(i: int) -> None:
            request = SynthesisRequest(text=TEXT, speaker="vivian", seed=i, min_frames=40,
                                       max_new_tokens=41)
            for chunk in engine.stream(request, CHUNKING):
                if not first[i] and chunk.audio.size:
                    first[i] = time.perf_counter()
            ended[i] = time.perf_counter()

        threads = [threading.Thread(target=listen, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        assert all(ended) and max(first) < min(ended)
        assert engine.loop.loop_stats.refused == 0


def test_the_loop_never_runs_more_than_two_steps_ahead_of_the_codec_thread(tiny_engine):
    # frames made faster than the codec thread decodes them would only wait in its queue,
    # where no listener hears them (every first audio then late by the whole backlog):
    # while decoding is held, the loop stops after CODEC_BACKLOG steps' output
    from deployments.engine.step_loop import CODEC_BACKLOG

    engine = tiny_engine(ModelKind.CUSTOM_VOICE, backend="batched")
    output = engine.loop.output
    held, deliver = threading.Event(), output.deliver
    calls = []

    def slow_deliver(due, leaving):
        calls.append(len(due))
        held.wait(60)
        deliver(due, leaving)

    output.deliver = slow_deliver
    try:
        request = SynthesisRequest(text=TEXT, speaker="vivian", seed=3, min_frames=40,
                                   max_new_tokens=41)
        stream = engine.stream(request, StreamChunking(first_chunk_frames=1, chunk_frames=1,
                                                       left_context_frames=25))
        deadline = time.monotonic() + 60
        while len(calls) < 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        made = engine.stream_stats.frames_generated
        time.sleep(0.3)  # (a loop that ignored the backlog would make ~all 40 frames here)
        assert engine.stream_stats.frames_generated - made <= CODEC_BACKLOG
        held.set()
        audio = np.concatenate([c.audio for c in stream])
        assert audio.size == 40 * FRAME
    finally:
        held.set()
        engine.close()
