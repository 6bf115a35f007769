"""benchmarks/load.py cannot rot: a short open-loop run (a few seconds at a low rate) over the
graph's streamed pcm produces its report with every field. Asserts nothing about speed or
gaps: those are the benchmark's figures."""

from __future__ import annotations

import asyncio

from ray import serve

from benchmarks.load import (
    DEFAULT_PROMPTS,
    HEADER,
    SCHEDULES,
    HttpTransport,
    _profile,
    _split,
    _streaming,
    load_prompts,
    refusal_status,
    replica_counters,
    row,
    run_rate,
)

FIELDS = {"requests", "served", "errors", "ttfb_ms", "first_audio_ms", "e2e_ms", "rtf",
          "with_gap", "gaps", "gap_total_ms", "gap_max_ms", "first_gap_at_s", "audio_s_per_s",
          "silent", "rate", "transport", "peak_in_flight", "late_dispatches", "wall_s",
          "load_avg_before", "load_avg_after"}


def test_a_short_open_loop_run_reports_every_field(graph):
    prompts = load_prompts(DEFAULT_PROMPTS)
    assert len(prompts) == 60
    replica = serve.get_deployment_handle("CustomVoice", graph.app_name)

    async def run() -> dict:
        transport = HttpTransport(graph.base_url, graph.api_key, "audio")
        transport.counters = lambda: replica_counters(replica)  # as load.py's Graph
        await transport.open()
        try:
            return await run_rate(transport, prompts, 2.0, seconds=2.0, warmup=0.5,
                                  arrivals="constant", frames_per_word=1.0, seed=7)
        finally:
            await transport.close()

    report = asyncio.run(run())
    assert FIELDS <= set(report)
    assert report["requests"] >= 3 and report["served"] + sum(report["errors"].values()) == report["requests"]
    assert report["served"] >= 1 and report["audio_s_per_s"] > 0
    assert report["first_audio_ms"]["p95"] is not None
    assert row("batched", report).count("|") == HEADER.count("|")
    # the engine's own late chunks and refusals over the window, read from the replica
    assert report["server"] is not None and set(report["server"]) == {"late_chunks", "refused"}
    assert all(isinstance(v, int) and v >= 0 for v in report["server"].values())


def test_overload_counts_as_refused_only_with_a_retry_after():
    # the done criterion: every request served without a gap or refused with 503 +
    # Retry-After; a bare 503 is an error of its own in the report
    assert refusal_status(503, {"retry-after": "1"}) == "503"
    assert refusal_status(503, {}) == "503 without Retry-After"
    assert refusal_status(429, {}) == "429 without Retry-After"
    assert refusal_status(400, {}) == "400"


def test_paced_is_the_profile_as_shipped_and_paced_1_its_one_frame_chunks():
    # the A/B of stop 36: "paced" takes the CPU profile's chunking, "paced-1" overrides the
    # first and smallest chunks with one frame and keeps everything else
    cv = _profile().args.custom_voice
    engine, streaming = _split(SCHEDULES["paced"])
    assert engine == {"pacing": True} and _streaming(streaming) == cv.streaming
    engine, streaming = _split(SCHEDULES["paced-1"])
    assert engine == {"pacing": True, "pacing_min_chunk_frames": 1}
    assert _streaming(streaming) == cv.streaming.model_copy(update={"first_chunk_frames": 1})
    assert cv.streaming.first_chunk_frames == cv.engine.pacing_min_chunk_frames == 3
