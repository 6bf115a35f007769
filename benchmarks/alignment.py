#!/usr/bin/env python
"""Benchmark: what word timestamps add to a request on the CPU demo, side by side.

    python benchmarks/alignment.py [--frames 25 75] [--runs 7]

Starts the CPU profile's graph (configs/cpu-tiny.yaml: the tiny random-weight TTS checkpoints
and the tiny random-weight ForcedAligner) and times `POST /v1/audio/speech` (pcm, whole) with
`timestamps` "none" and "word" (the aligner deployment on the produced audio), alternating,
each request seeded and forced to `--frames` codec frames (12.5 per second) so both sides
speak the same length; every request's text is new (no cache hit). Then, in-process, the
tiny aligner model alone on that much audio (its share of the added time) and the estimate
(the path without an aligner) on the same text. The tiny aligner is a 1-layer
model: on a GPU the real 0.6B one takes its own time (one forward pass over the audio and
the words); this measures the hop, the ingress's work and the qwen-asr preprocessing.
Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

TEXT = "It costs $1,299.99 at 13:45 today, said Dr. Smith, and the rest of the sentence runs on"


def timed(client, key: str, run: int, frames: int, timestamps: str) -> float:
    started = time.perf_counter()
    r = client.post("/v1/audio/speech", headers={"Authorization": f"Bearer {key}"}, json={
        "model": "tts-1", "voice": "alloy", "response_format": "pcm", "language": "en",
        "input": f"{TEXT} {run} {timestamps}.", "seed": run, "min_frames": frames,
        "max_new_tokens": frames + 1, "timestamps": timestamps})
    elapsed = time.perf_counter() - started
    r.raise_for_status()
    if timestamps == "word":
        assert r.json()["source"] == "aligner", r.json()["source"]
    return elapsed


def estimate_ms(frames: int, repeat: int = 50) -> float:
    import numpy as np

    from deployments.engine.types import ModelInfo, ModelKind
    from serve_app.app.args import AppArgs
    from serve_app.protocol.speech import CustomVoiceInput
    from serve_app.synthesis.model_call import CallBuilder
    from serve_app.synthesis.word_timing import WordTimer

    info = ModelInfo(kind=ModelKind.CUSTOM_VOICE, model="tiny", speakers=("vivian",),
                     dialect_speakers={}, languages=("auto", "english"), sample_rate=24000,
                     device="cpu", dtype="float32", model_size="tiny")

    async def run() -> float:
        async def model_info(_):
            return info
        call = await CallBuilder(AppArgs(), model_info).prepare(
            CustomVoiceInput(text=TEXT, speaker="vivian", language="en"))
        audio = np.zeros(frames * 1920, dtype=np.float32)
        timer = WordTimer()
        times = []
        for _ in range(repeat):
            started = time.perf_counter()
            await timer.timings(call, TEXT, audio, 24000)
            times.append(time.perf_counter() - started)
        return statistics.median(times) * 1000

    return asyncio.run(run())


def aligner_ms(frames: int, repeat: int = 11) -> float:
    """The tiny aligner model alone (deployments.aligner_server.Aligner, one thread), on
    `frames` of audio and the text's spoken words: what the deployment call costs inside."""
    import numpy as np

    from deployments.aligner_server import Aligner
    from deployments.args import TINY_ALIGNER, AlignerArgs
    from serve_app.synthesis.word_timing import WORD

    global _ALIGNER
    if _ALIGNER is None:
        _ALIGNER = Aligner(AlignerArgs(model=TINY_ALIGNER, device="cpu", num_threads=1))
    audio = np.random.default_rng(0).standard_normal(frames * 1920).astype(np.float32) * 0.1
    words = WORD.findall(TEXT)
    _ALIGNER.align(audio, 24000, words)
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        _ALIGNER.align(audio, 24000, words)
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000


_ALIGNER = None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--frames", type=int, nargs="+", default=[25, 75])
    ap.add_argument("--runs", type=int, default=7)
    args = ap.parse_args()
    import httpx

    from benchmarks.cpu_graph import cpu_graph

    with cpu_graph(aligner=True) as (base_url, key):
        with httpx.Client(base_url=base_url, timeout=300) as client:
            for ts in ("none", "word"):  # warm both paths
                timed(client, key, 10_000, 4, ts)
            print(f"tiny CPU checkpoints, {os.cpu_count()} cores, {args.runs} runs per cell, "
                  "POST /v1/audio/speech pcm whole (median / p90 ms)\n")
            print("| audio s | timestamps none | timestamps word (aligner) | added |"
                  " aligner model alone | estimate (in-process) |")
            print("|---|---|---|---|---|---|")
            for frames in args.frames:
                none, word = [], []
                for run in range(args.runs):
                    none.append(timed(client, key, run, frames, "none"))
                    word.append(timed(client, key, run, frames, "word"))

                def cell(xs: list[float]) -> str:
                    xs = sorted(xs)
                    return (f"{statistics.median(xs) * 1000:.0f} / "
                            f"{xs[min(len(xs) - 1, int(0.9 * len(xs)))] * 1000:.0f}")
                added = (statistics.median(word) - statistics.median(none)) * 1000
                print(f"| {frames / 12.5:.1f} | {cell(none)} | {cell(word)} | {added:+.0f} ms |"
                      f" {aligner_ms(frames):.0f} ms | {estimate_ms(frames):.2f} ms |",
                      flush=True)


if __name__ == "__main__":
    main()
