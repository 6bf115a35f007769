"""benchmarks/load.py cannot rot: a short open-loop run (a few seconds at a low rate) over the
graph's streamed pcm produces its report with every field. Asserts nothing about speed or
gaps: those are the benchmark's figures."""

from __future__ import annotations

import asyncio

import httpx

from benchmarks.load import DEFAULT_PROMPTS, HEADER, HttpTransport, load_prompts, row, run_rate

FIELDS = {"requests", "served", "errors", "ttfb_ms", "first_audio_ms", "e2e_ms", "rtf",
          "with_gap", "gaps", "gap_total_ms", "gap_max_ms", "first_gap_at_s", "audio_s_per_s",
          "silent", "rate", "transport", "peak_in_flight", "late_dispatches", "wall_s",
          "load_avg_before", "load_avg_after"}


def test_a_short_open_loop_run_reports_every_field(graph):
    prompts = load_prompts(DEFAULT_PROMPTS)
    assert len(prompts) == 60

    async def run() -> dict:
        transport = HttpTransport(graph.base_url, graph.api_key, "audio")
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


def test_streams_beyond_what_the_engine_can_keep_get_503_with_retry_after(graph):
    # Admission by what can be kept (issue 18): the CPU profile's engine has 16 slots and a
    # first-audio bound of 0.5 s. 24 long streams at once: those that cannot get a slot that
    # keeps them ahead of their listener within the bound are refused with 503 +
    # Retry-After before any audio, never admitted to stutter; the rest are served.
    async def burst() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=graph.base_url, timeout=300,
                                     headers=graph.auth) as client:
            return await asyncio.gather(*(
                client.post("/v1/audio/speech", json={
                    "model": "tts-1", "input": f"Refusal test number {i}.", "voice": "vivian",
                    "seed": 500 + i, "response_format": "pcm", "stream_format": "audio",
                    "min_frames": 150, "max_new_tokens": 151})
                for i in range(24)))

    responses = asyncio.run(burst())
    codes = [r.status_code for r in responses]
    assert set(codes) <= {200, 503}, codes
    assert 503 in codes and 200 in codes, codes
    for r in responses:
        if r.status_code == 503:
            assert int(r.headers["Retry-After"]) >= 1
            assert r.json()["error"]["code"] == "overloaded"
        else:
            assert len(r.content) >= 150 * 1920 * 2  # every frame of a served stream
