#!/usr/bin/env python
"""Streaming benchmark: time-to-first-audio (p50/p95), real-time factor and total time for
1, 4 and 16 concurrent streams, directly on the engine and through the whole HTTP graph
(proxy -> ingress -> CustomVoice, chunked pcm), side by side, on the tiny CPU checkpoints.

    python benchmarks/streaming.py [--concurrency 1 4 16] [--frames 40] [--long-seconds 10]

Random weights stop at random, so each request is seeded (seed i for stream i: the same work
on both paths) and capped at --frames codec frames (12.5 per second). The "long utterance"
line answers issue 3's done-criterion: a seed whose output runs the full --long-seconds is
picked on the engine (deterministic per seed), then streamed over HTTP: first audio vs total.
RTF = wall time of a stream / seconds of audio it produced (below 1: faster than real time).
Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx  # noqa: E402
import torch  # noqa: E402

from deployments.engine import (  # noqa: E402
    EngineConfig,
    StreamChunking,
    SynthesisRequest,
    TTSEngine,
)
from deployments.engine.tiny import default_tiny_models_dir, ensure_tiny_models  # noqa: E402

TEXT = "Streaming speech synthesis benchmark sentence, long enough to keep the talker busy."
RATE = 24_000
CHUNKING = StreamChunking(first_chunk_frames=1, chunk_frames=6, left_context_frames=25)
REPO = Path(__file__).resolve().parents[1]


@dataclass
class Run:
    ttfa: float  # seconds to the first audio
    total: float  # seconds to the end of the stream
    audio_seconds: float


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def engine_stream(engine: TTSEngine, seed: int, frames: int) -> Run:
    req = SynthesisRequest(text=TEXT, speaker="vivian", seed=seed, max_new_tokens=frames + 1)
    t0 = time.perf_counter()
    first = None
    samples = 0
    for chunk in engine.stream(req, CHUNKING):
        if first is None and chunk.audio.size:
            first = time.perf_counter() - t0
        samples += chunk.audio.size
    total = time.perf_counter() - t0
    return Run(first if first is not None else total, total, samples / RATE)


def http_stream(base_url: str, seed: int, frames: int) -> Run:
    body = {"model": "tts-1", "input": TEXT, "voice": "vivian", "seed": seed,
            "response_format": "pcm", "stream_format": "audio", "max_new_tokens": frames + 1}
    t0 = time.perf_counter()
    first = None
    size = 0
    with httpx.Client(base_url=base_url, timeout=600) as client, \
            client.stream("POST", "/v1/audio/speech", json=body) as r:
        r.raise_for_status()
        for piece in r.iter_raw():
            if piece and first is None:
                first = time.perf_counter() - t0
            size += len(piece)
    total = time.perf_counter() - t0
    return Run(first if first is not None else total, total, size / 2 / RATE)


def concurrent(fn: Callable[[int], Run], n: int) -> tuple[list[Run], float]:
    runs: list[Run | None] = [None] * n

    def one(i: int) -> None:
        runs[i] = fn(i)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return [r for r in runs if r is not None], time.perf_counter() - t0


def report(path: str, n: int, runs: list[Run], wall: float) -> str:
    ttfa = [r.ttfa * 1000 for r in runs]
    rtf = [r.total / r.audio_seconds for r in runs if r.audio_seconds]
    audio = sum(r.audio_seconds for r in runs)
    return (f"| {path:6s} | {n:3d} | {_percentile(ttfa, 0.5):8.0f} | {_percentile(ttfa, 0.95):8.0f} "
            f"| {statistics.median(rtf):6.2f} | {wall:7.2f} | {audio:7.1f} |")


def find_long_seed(engine: TTSEngine, frames: int, tries: int) -> int | None:
    for seed in range(tries):
        req = SynthesisRequest(text=TEXT, speaker="vivian", seed=seed, max_new_tokens=frames + 1)
        if engine.synthesize([req])[0].frames >= frames:
            return seed
    return None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 16])
    ap.add_argument("--frames", type=int, default=40, help="cap per request (12.5 per second)")
    ap.add_argument("--long-seconds", type=float, default=10.0)
    ap.add_argument("--seed-tries", type=int, default=40)
    args = ap.parse_args()
    torch.set_num_threads(1)
    root = default_tiny_models_dir()
    ensure_tiny_models(root)
    os.environ["QTTS_TINY_MODELS_DIR"] = str(root)

    engine = TTSEngine.load(EngineConfig(model=str(root / "custom_voice"), device="cpu",
                                         dtype="float32", num_threads=1))
    import ray
    from ray import serve

    from serve_app.tools.cli import start_graph
    from tests.graph.conftest import free_port

    port = free_port()
    start_graph(REPO / "configs" / "cpu-tiny.yaml", "127.0.0.1", port, num_cpus=8)
    base_url = f"http://127.0.0.1:{port}"
    try:
        http_stream(base_url, 0, 4)  # warm the path
        print(f"tiny CPU checkpoints, {os.cpu_count()} cores, chunking "
              f"{CHUNKING.first_chunk_frames}+{CHUNKING.chunk_frames} frames, cap {args.frames} "
              f"frames ({args.frames / 12.5:.1f} s) per request\n")
        print("| path   |   n | TTFA p50 | TTFA p95 | RTF p50 | total s | audio s |")
        print("|--------|-----|----------|----------|---------|---------|---------|")
        for n in args.concurrency:
            runs, wall = concurrent(lambda i: engine_stream(engine, i, args.frames), n)
            print(report("engine", n, runs, wall), flush=True)
            runs, wall = concurrent(lambda i: http_stream(base_url, i, args.frames), n)
            print(report("http", n, runs, wall), flush=True)

        frames = round(args.long_seconds * 12.5)
        seed = find_long_seed(engine, frames, args.seed_tries)
        if seed is None:
            print(f"\nno seed in 0..{args.seed_tries - 1} ran {args.long_seconds} s on the "
                  "random checkpoint")
            return
        run = http_stream(base_url, seed, frames)
        share = run.ttfa / run.total
        print(f"\nlong utterance over HTTP (seed {seed}): {run.audio_seconds:.2f} s of audio, "
              f"first audio {run.ttfa * 1000:.0f} ms, total {run.total:.2f} s, "
              f"first audio at {100 * share:.1f}% of the total "
              f"({'under' if share < 0.1 else 'NOT under'} 10%)")
    finally:
        serve.shutdown()
        ray.shutdown()


if __name__ == "__main__":
    main()
