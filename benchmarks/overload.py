#!/usr/bin/env python
"""Overload benchmark: probes and refusals while the CPU demo is flooded (issue 16, item 3).

    python benchmarks/overload.py [--concurrency 300] [--seconds 30] [--url URL --key KEY]

Starts `qtts demo` on a free port (or uses --url/--key), then keeps --concurrency closed-loop
clients sending distinct streamed synthesis requests (`POST /v1/audio/speech`, pcm; after a
refusal a client waits its Retry-After). Meanwhile a prober in a process of its own (so its
timings are not the flood's event loop) asks `/livez`, `/readyz` and `/api/health` and sends
one synthesis request every 0.1 s, and reports what one more client sees: p50/p95/p99/max of
each probe, of its synthesis requests by status (503: the time to the refusal), and the
flood's own figures with its event loop's lag (how late its own clients see an answer).
The target: p99 of /livez and of the refusals under 500 ms.

The load generator runs at the niceness Ray gives its workers (15): on a small box it shares
the cores with the server it measures, and at the default priority it would take them from
the proxy and the replicas. Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
QTTS = Path(sys.executable).with_name("qtts")
PROBES = ("/livez", "/readyz", "/api/health")
#: The flood's streams are ~5 s of audio: the replica stays full (MAX_CONCURRENT in flight)
#: with few new requests a second, so the prober's request meets a full server.
FLOOD_FRAMES = 60


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_demo() -> tuple[subprocess.Popen, str, str]:
    """`qtts demo` on a free port with a fresh HOME: (process, base URL, its API key)."""
    home = Path(tempfile.mkdtemp(prefix="qtts-overload-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "QTTS_"))}
    env.update(HOME=str(home), QTTS_DATA_DIR=str(home / "data"))
    from deployments.engine.tiny import default_tiny_models_dir, ensure_tiny_models

    models = default_tiny_models_dir()
    ensure_tiny_models(models)
    env["QTTS_TINY_MODELS_DIR"] = str(models)
    port = _free_port()
    proc = subprocess.Popen([str(QTTS), "demo", "--port", str(port)], cwd=home, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    key, ready = [], threading.Event()

    def read() -> None:
        for line in proc.stdout:
            if found := re.search(r"(qtts_[A-Za-z0-9_-]{20,})", line):
                key.append(found.group(1))
            if "qtts demo is serving" in line:
                ready.set()

    threading.Thread(target=read, daemon=True).start()
    if not ready.wait(600):
        proc.kill()
        raise RuntimeError("the demo was not ready in 600 s")
    time.sleep(1.0)  # the key line follows the ready line
    return proc, f"http://127.0.0.1:{port}", key[0]


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))] if ordered else 0.0


async def flood(url: str, key: str, concurrency: int, seconds: float) -> dict[str, list[float]]:
    times: dict[str, list[float]] = defaultdict(list)
    stop = time.monotonic() + seconds
    limits = httpx.Limits(max_connections=concurrency + 8, max_keepalive_connections=concurrency)

    async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits,
                                 headers={"Authorization": f"Bearer {key}"}) as client:
        async def worker(n: int) -> None:
            i = 0
            while time.monotonic() < stop:
                i += 1
                started = time.monotonic()
                try:
                    async with client.stream("POST", "/v1/audio/speech",
                                             json=_speech(f"{n} {i}", n * 10_000 + i, FLOOD_FRAMES)) as r:
                        if r.status_code != 200:
                            await r.aread()
                            times[f"flood: refused {r.status_code}"].append(
                                time.monotonic() - started)
                            await asyncio.sleep(float(r.headers.get("Retry-After", "1")))
                            continue
                        first = True
                        async for _ in r.aiter_raw():
                            if first:
                                times["flood: served, first byte"].append(
                                    time.monotonic() - started)
                                first = False
                except httpx.HTTPError as exc:
                    times[f"flood: client error {type(exc).__name__}"].append(
                        time.monotonic() - started)

        async def loop_lag() -> None:
            # how late this process's own event loop wakes: a flood figure is only the
            # server's time where this lag is small against it
            while time.monotonic() < stop:
                started = time.monotonic()
                await asyncio.sleep(0.1)
                times["flood client: event loop lag"].append(time.monotonic() - started - 0.1)

        await asyncio.gather(loop_lag(), *(worker(n) for n in range(concurrency)))
    return times


def _speech(tag: str, seed: int, frames: int = 12) -> dict:
    """A streamed request of `frames` to `frames + 12` codec frames (12.5 per second)."""
    return {"model": "tts-1", "voice": "alloy", "response_format": "pcm",
            "input": f"Overload request {tag}.", "seed": seed, "min_frames": frames,
            "max_new_tokens": frames + 12}


def probe(url: str, key: str, seconds: float, out: multiprocessing.Queue) -> None:
    """One more client, in its own process: the probes every 0.1 s, and beside them one
    synthesis request at a time (0.1 s apart)."""
    os.nice(15)

    async def run() -> dict[str, list[float]]:
        times: dict[str, list[float]] = defaultdict(list)
        stop = time.monotonic() + seconds

        async def probes(client: httpx.AsyncClient) -> None:
            while time.monotonic() < stop:
                for path in PROBES:
                    started = time.monotonic()
                    try:
                        r = await client.get(path)
                        times[f"{path} ({r.status_code})"].append(time.monotonic() - started)
                    except httpx.HTTPError as exc:
                        times[f"{path} ({type(exc).__name__})"].append(
                            time.monotonic() - started)
                await asyncio.sleep(0.1)

        async def requests(client: httpx.AsyncClient) -> None:
            i = 0
            while time.monotonic() < stop:
                i += 1
                started = time.monotonic()
                try:
                    async with client.stream("POST", "/v1/audio/speech",
                                             json=_speech(f"probe {i}", i)) as r:
                        status = r.status_code
                        async for _ in r.aiter_raw():  # to the first byte: what was asked
                            break
                    times[f"one more request ({status}): answer or first byte"].append(
                        time.monotonic() - started)
                except httpx.HTTPError as exc:
                    times[f"one more request ({type(exc).__name__})"].append(
                        time.monotonic() - started)
                await asyncio.sleep(0.1)

        async with httpx.AsyncClient(base_url=url, timeout=60,
                                     headers={"Authorization": f"Bearer {key}"}) as client:
            await asyncio.gather(probes(client), requests(client))
        return dict(times)

    out.put(asyncio.run(run()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--concurrency", type=int, default=300)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--url")
    parser.add_argument("--key")
    args = parser.parse_args()
    proc = None
    if args.url:
        url, key = args.url, args.key or ""
    else:
        proc, url, key = start_demo()
    try:
        results: multiprocessing.Queue = multiprocessing.Queue()
        prober = multiprocessing.Process(target=probe, args=(url, key, args.seconds, results))
        os.nice(15)  # see the module docstring
        prober.start()
        times = asyncio.run(flood(url, key, args.concurrency, args.seconds))
        times.update(results.get(timeout=300))
        prober.join(timeout=60)
    finally:
        if proc is not None:
            os.killpg(proc.pid, signal.SIGINT)
            proc.wait(timeout=120)
    print(f"\n{args.concurrency} concurrent streamed requests for {args.seconds:g} s on {url}")
    print(f"{'what':34} {'count':>6} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} {'max ms':>8}")
    for name in sorted(times):
        values = times[name]
        print(f"{name:34} {len(values):6d} " + " ".join(
            f"{_pct(values, q) * 1000:8.0f}" for q in (0.5, 0.95, 0.99, 1.0)))


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    main()
