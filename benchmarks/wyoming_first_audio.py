#!/usr/bin/env python
"""Time to the first audio chunk over Wyoming (Home Assistant's protocol, serve_app.wyoming)
next to HTTP (streamed pcm from /v1/audio/speech), on the CPU demo graph, in one run.

    python benchmarks/wyoming_first_audio.py [--runs 20] [--frames 8]

One local graph of configs/cpu-tiny.yaml (open: no keys) with the Wyoming server on a free
port trusting loopback. Each round, one after the other (never overlapping): a Wyoming
`synthesize` through the `wyoming` package's own client, timed from the event written to the
first `audio-chunk`; an HTTP POST /v1/audio/speech (`response_format: pcm`,
`stream_format: audio`, the same voice, text and rate), timed from the request to its first
body bytes; and a Wyoming streaming-text synthesis (`synthesize-start`, the text in word
chunks written at once, `synthesize-stop`), timed from synthesize-start to the first chunk.
Random weights stop at random, so every request is held to --frames codec frames
(`min_frames` = `max_new_tokens`). Both Wyoming and HTTP audio are 22050 Hz. Prints medians
and p95; asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ["AUTH_ENABLED"] = "false"  # the open demo: HTTP needs no key (read by the replicas)
os.environ.setdefault("QTTS_DATA_DIR", tempfile.mkdtemp(prefix="qtts-wyoming-bench-"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx  # noqa: E402
from wyoming.audio import AudioChunk, AudioStop  # noqa: E402
from wyoming.client import AsyncTcpClient  # noqa: E402
from wyoming.error import Error  # noqa: E402
from wyoming.tts import (  # noqa: E402
    Synthesize,
    SynthesizeChunk,
    SynthesizeStart,
    SynthesizeStop,
    SynthesizeStopped,
    SynthesizeVoice,
)

REPO = Path(__file__).resolve().parents[1]
TEXT = "Good evening. The front door is locked and the lights downstairs are off."
VOICE = "Vivian"
RATE = 22050


async def _first_chunk(conn: AsyncTcpClient, until: type) -> float:
    """Read to the first audio chunk, then drain to `until` (or fail on an error event)."""
    first = None
    while True:
        event = await conn.read_event()
        if event is None:
            raise RuntimeError("the Wyoming server closed the connection")
        if Error.is_type(event.type):
            raise RuntimeError(f"Wyoming error: {Error.from_event(event).text}")
        if first is None and AudioChunk.is_type(event.type):
            first = time.perf_counter()
        if until.is_type(event.type):
            if first is None:
                raise RuntimeError("no audio chunk")
            return first


async def wyoming_synthesize(port: int) -> float:
    async with AsyncTcpClient("127.0.0.1", port) as conn:
        started = time.perf_counter()
        await conn.write_event(Synthesize(text=TEXT, voice=SynthesizeVoice(name=VOICE)).event())
        return await _first_chunk(conn, AudioStop) - started


async def wyoming_streamed(port: int) -> float:
    async with AsyncTcpClient("127.0.0.1", port) as conn:
        started = time.perf_counter()
        await conn.write_event(SynthesizeStart(voice=SynthesizeVoice(name=VOICE)).event())
        for word in TEXT.split(" "):
            await conn.write_event(SynthesizeChunk(text=word + " ").event())
        await conn.write_event(SynthesizeStop().event())
        return await _first_chunk(conn, SynthesizeStopped) - started


def http_stream(client: httpx.Client, frames: int) -> float:
    body = {"model": "tts-1", "input": TEXT, "voice": VOICE, "response_format": "pcm",
            "stream_format": "audio", "sample_rate": RATE, "min_frames": frames,
            "max_new_tokens": frames}
    started = time.perf_counter()
    with client.stream("POST", "/v1/audio/speech", json=body) as r:
        r.raise_for_status()
        first = None
        for piece in r.iter_raw():
            if piece and first is None:
                first = time.perf_counter()
    if first is None:
        raise RuntimeError("no audio bytes")
    return first - started


def _p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=20, help="rounds (each: one of every path)")
    ap.add_argument("--frames", type=int, default=8, help="codec frames per request (80 ms)")
    args = ap.parse_args()

    from deployments.checkpoints import ensure_tiny_checkpoints

    ensure_tiny_checkpoints()
    import ray
    from ray import serve

    from serve_app.app.builder import build_graph
    from serve_app.tools.profiles import load_profile
    from serve_app.tools.ray_env import apply_serve_env
    from serve_app.wyoming.wyoming_args import WyomingArgs
    from tests.graph.conftest import free_port

    profile = load_profile(REPO / "configs" / "cpu-tiny.yaml")
    http_port, wyoming_port = free_port(), free_port()
    wyoming = WyomingArgs(enabled=True, host="127.0.0.1", port=wyoming_port, sample_rate=RATE,
                          default_voice=VOICE, min_frames=args.frames,
                          max_new_tokens=args.frames)
    app_args = profile.args.model_copy(update={
        "wyoming": wyoming,
        "platform": profile.args.platform.model_copy(update={"trusted_networks": ["127.0.0.0/8"]}),
    })
    apply_serve_env()  # the shipped Ray Serve settings (serve_app/tools/ray_env.py)
    ray.init(num_cpus=8, include_dashboard=False, logging_level="WARNING", log_to_driver=False)
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": http_port})
        serve.run(build_graph(app_args, profile.overrides), name=profile.app_name,
                  route_prefix=profile.route_prefix)
        paths: dict[str, list[float]] = {"wyoming synthesize": [], "http pcm stream": [],
                                         "wyoming streamed text": []}
        with httpx.Client(base_url=f"http://127.0.0.1:{http_port}", timeout=120) as client:
            # warm every path once (first requests load codecs and resamplers)
            asyncio.run(wyoming_synthesize(wyoming_port))
            http_stream(client, args.frames)
            asyncio.run(wyoming_streamed(wyoming_port))
            for _ in range(args.runs):
                paths["wyoming synthesize"].append(asyncio.run(wyoming_synthesize(wyoming_port)))
                paths["http pcm stream"].append(http_stream(client, args.frames))
                paths["wyoming streamed text"].append(asyncio.run(wyoming_streamed(wyoming_port)))
        print(f"\ntiny CPU checkpoints (configs/cpu-tiny.yaml), {os.cpu_count()} cores, "
              f"{args.runs} rounds, {args.frames} frames per request, {RATE} Hz, voice {VOICE}\n")
        print("| path                  | first audio p50 ms | p95 ms | min ms |")
        print("|-----------------------|--------------------|--------|--------|")
        for name, times in paths.items():
            ms = [t * 1000 for t in times]
            print(f"| {name:21s} | {statistics.median(ms):18.0f} | {_p95(ms):6.0f} "
                  f"| {min(ms):6.0f} |")
    finally:
        ray.shutdown()


if __name__ == "__main__":
    main()
