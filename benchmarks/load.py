#!/usr/bin/env python
"""Open-loop load benchmark: what listeners hear while requests arrive at a fixed rate.

    .venv/bin/python benchmarks/load.py --rates 1 2 4 8 --reference-rates 0.5 1 \
        --seconds 30 --warmup 5 --json out.json
    .venv/bin/python benchmarks/load.py --rates 1 2 4 8 16 --sweep --bound-ms 250
    .venv/bin/python benchmarks/load.py --transports pcm sse ws --engine --rates 4
    .venv/bin/python benchmarks/load.py --transports --engine --schedules paced paced-1 \
        --reference-rates --rates 4 8 --seconds 12 --warmup 3 --rounds 3   # A/B, interleaved

Requests arrive at --rates per second (Poisson, or --arrivals constant), independent of
completions, for --warmup seconds (not counted) and then --seconds (measured); the run then
waits for every request in flight. Each takes the next prompt of --prompts (JSONL of
{"id", "text"}; default benchmarks/prompts/en.jsonl, 60 English prompts of 10-17 words) with
a length forced from its words (--frames-per-word codec frames per word: `min_frames`, since
random weights stop at random), seeded by its index.

Transports: `pcm` (POST /v1/audio/speech, stream_format "audio", raw pcm), `sse` (the same,
OpenAI's SSE events), `ws` (the speech-session WebSocket /v1/audio/speech/stream, sentence
mode, the whole prompt then close), and with --engine the in-process engine (no HTTP: the
same engine config, chunking and requests, `TTSEngine.astream`), so what HTTP costs is seen
beside it. The HTTP graph is the CPU profile (configs/cpu-tiny.yaml, CustomVoice only,
platform auth off) on a fresh local Ray, deployed with engine.backend batched and then
reference, in one run (or --url: a running server, with --key).

Per request (benchmarks/listener.py): time to first byte, audible first audio (the first
10 ms window above -45 dBFS), a player simulated from that sample (every gap and its
length), end-to-end time and RTF (end-to-end / audio seconds). Per rate: p50/p95/p99 of
those, requests with a gap, total and largest gap, audio seconds received per second, peak
in flight, late dispatches (the generator itself sent a request > 20 ms after its time:
its figures then say less), server late chunks (chunks the engine sent after its own clock
said the listener had run dry, read from the replica: a client gap without them was made
on the way to the client), errors by status (a 429 or 503 without Retry-After counts as an
error of its own, not as a refusal). `--sweep`: per backend, the rates in order until one
fails the gate (every request served, no gap, p95 audible first audio within --bound-ms);
the highest that passed is the result. Prints a table and the load average; asserts
nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import random
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402

from benchmarks.listener import Heard, Pcm16Pieces, hear  # noqa: E402

RATE = 24_000
DEFAULT_PROMPTS = REPO / "benchmarks" / "prompts" / "en.jsonl"
VOICE = "vivian"
LATE_DISPATCH_S = 0.020
TRANSPORTS = ("pcm", "sse", "ws", "engine")


@dataclass(frozen=True)
class Prompt:
    id: str
    text: str


def load_prompts(path: Path) -> list[Prompt]:
    out = []
    for line in path.read_text().splitlines():
        if line.strip():
            row = json.loads(line)
            out.append(Prompt(str(row["id"]), str(row["text"])))
    if not out:
        raise SystemExit(f"no prompts in {path}")
    return out


def arrival_times(rate: float, seconds: float, kind: str, rng: random.Random) -> list[float]:
    """Offsets (s) of the arrivals in [0, seconds): Poisson or evenly spaced."""
    times, t = [], 0.0
    while True:
        t += rng.expovariate(rate) if kind == "poisson" else 1.0 / rate
        if t >= seconds:
            return times
        times.append(t)


@dataclass
class Outcome:
    """One request: its status ("ok", an HTTP status, or an error name) and what was heard."""

    status: str
    heard: Heard
    measured: bool  # arrived in the measured window (not the warm-up)
    late_dispatch: bool


@dataclass
class Call:
    """One request to send."""

    prompt: Prompt
    seed: int
    frames: int


# ---------------------------------------------------------------------------- transports
class Transport:
    """Sends one `Call` and returns (status, timed float pieces) relative to `t0`."""

    name = ""

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def send(self, call: Call, t0: float) -> tuple[str, list[tuple[float, np.ndarray]]]:
        raise NotImplementedError

    #: reads the server's counters (`late_chunks`, `refused`), where it can (`server_counters`)
    counters: Callable[[], dict | None] | None = None

    def server_counters(self) -> dict | None:
        """The server's own counters where this transport can read them: in process, or the
        local graph's model replica through a Ray handle; None for a server given by --url."""
        return self.counters() if self.counters is not None else None


def _body(call: Call, stream_format: str) -> dict:
    return {"model": "tts-1", "input": call.prompt.text, "voice": VOICE, "seed": call.seed,
            "response_format": "pcm", "stream_format": stream_format,
            "min_frames": call.frames, "max_new_tokens": call.frames + 1}


class HttpTransport(Transport):
    """POST /v1/audio/speech, read by aiohttp (Ray Serve's own HTTP client library, C
    parser): the listeners share this machine's cores with the graph, and httpx's pure-Python
    reading cost several times as much CPU per stream (docs/streaming.md)."""

    def __init__(self, base_url: str, key: str | None, stream_format: str) -> None:
        self.name = "pcm" if stream_format == "audio" else "sse"
        self._url, self._key, self._format = base_url, key, stream_format
        self._client = None

    async def open(self) -> None:
        import aiohttp

        headers = {"Authorization": f"Bearer {self._key}"} if self._key else {}
        self._client = aiohttp.ClientSession(
            base_url=self._url, headers=headers, connector=aiohttp.TCPConnector(limit=0),
            timeout=aiohttp.ClientTimeout(sock_connect=300, sock_read=300),  # per read, as before
            read_bufsize=1 << 20)  # an SSE line carries a whole chunk (base64)

    async def close(self) -> None:
        await self._client.close()

    async def send(self, call: Call, t0: float) -> tuple[str, list[tuple[float, np.ndarray]]]:
        pcm = Pcm16Pieces()
        async with self._client.post("/v1/audio/speech", json=_body(call, self._format)) as r:
            if r.status != 200:
                await r.read()
                return refusal_status(r.status, r.headers), []
            if self._format == "audio":
                async for data in r.content.iter_any():
                    pcm.add(time.perf_counter() - t0, data)
            else:
                async for raw in r.content:
                    line = raw.decode().rstrip("\r\n")
                    if not line.startswith("data: "):
                        continue
                    event = json.loads(line[6:])
                    if event["type"] == "speech.audio.delta":
                        pcm.add(time.perf_counter() - t0, base64.b64decode(event["audio"]))
                    elif event["type"] == "error":
                        return f"sse {event.get('error', {}).get('code', 'error')}", pcm.pieces
        return "ok", pcm.pieces


def refusal_status(status: int, headers) -> str:
    """An HTTP refusal's status; overload (429/503) counts as a refusal only with the
    Retry-After that tells the client when to come back, else it is an error of its own."""
    if status in (429, 503) and not headers.get("retry-after"):
        return f"{status} without Retry-After"
    return str(status)


class SessionTransport(Transport):
    """The speech-session WebSocket, sentence mode: the whole prompt, then close."""

    name = "ws"

    def __init__(self, base_url: str, key: str | None) -> None:
        self._url = base_url.replace("http://", "ws://") + "/v1/audio/speech/stream"
        self._key = key

    async def send(self, call: Call, t0: float) -> tuple[str, list[tuple[float, np.ndarray]]]:
        from websockets.asyncio.client import connect
        from websockets.exceptions import InvalidStatus

        pcm = Pcm16Pieces()
        headers = {"Authorization": f"Bearer {self._key}"} if self._key else {}
        try:
            async with connect(self._url, additional_headers=headers, max_size=None,
                               open_timeout=120) as ws:
                await ws.send(json.dumps({
                    "type": "session", "voice": VOICE, "seed": call.seed, "mode": "sentence",
                    "response_format": "pcm", "min_frames": call.frames,
                    "max_new_tokens": call.frames + 1}))
                created = json.loads(await ws.recv())
                if created.get("type") != "session.created":
                    return f"ws {created.get('error', {}).get('code', created.get('type'))}", []
                await ws.send(json.dumps({"type": "text", "text": call.prompt.text}))
                await ws.send(json.dumps({"type": "close"}))
                async for message in ws:
                    if isinstance(message, bytes):
                        pcm.add(time.perf_counter() - t0, message)
                        continue
                    event = json.loads(message)
                    if event["type"] == "done":
                        break
                    if event["type"] == "error":
                        return f"ws {event.get('error', {}).get('code', 'error')}", pcm.pieces
        except InvalidStatus as exc:
            return refusal_status(exc.response.status_code, exc.response.headers), []
        return "ok", pcm.pieces


class EngineTransport(Transport):
    """The engine in this process: no HTTP, the profile's engine config and chunking."""

    name = "engine"

    def __init__(self, engine, chunking) -> None:
        self._engine, self._chunking = engine, chunking

    async def send(self, call: Call, t0: float) -> tuple[str, list[tuple[float, np.ndarray]]]:
        from deployments.engine import SynthesisRequest
        from deployments.engine.types import EngineOverloadedError

        req = SynthesisRequest(text=call.prompt.text, speaker=VOICE, seed=call.seed,
                               min_frames=call.frames, max_new_tokens=call.frames + 1)
        pieces = []
        try:
            stream = self._engine.astream(req, self._chunking)
            async for chunk in stream:
                if chunk.audio.size:
                    pieces.append((time.perf_counter() - t0, chunk.audio))
        except EngineOverloadedError:
            return "503", pieces
        return "ok", pieces

    def server_counters(self) -> dict | None:
        st = self._engine.loop.loop_stats if self._engine.loop is not None else None
        if st is None:
            return None
        return {"late_chunks": st.late_chunks, "refused": st.refused}


# ---------------------------------------------------------------------------- one rate
async def run_rate(transport: Transport, prompts: list[Prompt], rate: float, *, seconds: float,
                   warmup: float, arrivals: str, frames_per_word: float, seed: int) -> dict:
    """Open-loop arrivals at `rate` for warmup + seconds; the measured window's summary."""
    rng = random.Random(seed)
    offsets = arrival_times(rate, warmup + seconds, arrivals, rng)
    outcomes: list[Outcome] = []
    in_flight = peak = 0
    start = time.perf_counter()
    load_before = os.getloadavg()
    counters_before = await asyncio.to_thread(transport.server_counters)  # may block on Ray

    async def one(i: int, offset: float) -> None:
        nonlocal in_flight, peak
        prompt = prompts[i % len(prompts)]
        call = Call(prompt, seed + i, max(8, round(frames_per_word * len(prompt.text.split()))))
        t0 = time.perf_counter()
        late = t0 - (start + offset) > LATE_DISPATCH_S
        in_flight += 1
        peak = max(peak, in_flight)
        try:
            status, pieces = await transport.send(call, t0)
        except Exception as exc:  # noqa: BLE001 - an error is a figure
            status, pieces = type(exc).__name__, []
        finally:
            in_flight -= 1
        heard = hear(pieces, RATE)
        if status == "ok" and heard.end is not None:
            heard.end = max(heard.end, time.perf_counter() - t0)
        outcomes.append(Outcome(status, heard, offset >= warmup, late))

    tasks = []
    for i, offset in enumerate(offsets):
        delay = start + offset - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(i, offset)))
    await asyncio.gather(*tasks)
    report = summarize([o for o in outcomes if o.measured], seconds)
    report.update(rate=rate, transport=transport.name, peak_in_flight=peak,
                  late_dispatches=sum(o.late_dispatch for o in outcomes if o.measured),
                  wall_s=round(time.perf_counter() - start, 2),
                  load_avg_before=[round(x, 2) for x in load_before],
                  load_avg_after=[round(x, 2) for x in os.getloadavg()])
    after = await asyncio.to_thread(transport.server_counters)
    # chunks the engine itself sent after their listener had run dry (warm-up included), and
    # its refusals: a client gap with none here was made on the way (replica loop, Ray,
    # ingress, proxy), not by the engine; None where the server's counters are out of reach
    report["server"] = (None if after is None or counters_before is None else
                        {k: after[k] - counters_before[k] for k in after})
    return report


def _pcts(values: list[float], scale: float = 1000.0) -> dict:
    """p50/p95/p99 of `values` (seconds) x `scale` (ms by default)."""
    if not values:
        return {"p50": None, "p95": None, "p99": None}
    digits = 1 if scale >= 1000 else 3
    return {f"p{q}": round(float(np.percentile(values, q)) * scale, digits) for q in (50, 95, 99)}


def summarize(outcomes: list[Outcome], seconds: float) -> dict:
    """A rate's figures (times in ms) over its measured requests."""
    served = [o for o in outcomes if o.status == "ok"]
    heard = [o.heard for o in served]
    with_gap = [h for h in heard if h.gaps]
    errors = Counter(o.status for o in outcomes if o.status != "ok")
    e2e = [h.end for h in heard if h.end is not None]
    return {
        "requests": len(outcomes), "served": len(served),
        "errors": dict(errors),
        "ttfb_ms": _pcts([h.first_byte for h in heard if h.first_byte is not None]),
        "first_audio_ms": _pcts([h.first_audio for h in heard if h.first_audio is not None]),
        "e2e_ms": _pcts(e2e),
        "rtf": _pcts([h.end / h.audio_s for h in heard if h.end is not None and h.audio_s], 1.0),
        "with_gap": len(with_gap),
        "gaps": sum(len(h.gaps) for h in heard),
        "gap_total_ms": round(sum(h.gap_total for h in heard) * 1000, 1),
        "gap_max_ms": round(max((h.gap_max for h in heard), default=0.0) * 1000, 1),
        # where in its audio each stream's first gap fell (s after its first audible sample)
        "first_gap_at_s": _pcts([h.gap_at[0] for h in with_gap], 1.0),
        "audio_s_per_s": round(sum(h.audio_s for h in heard) / seconds, 2),
        "silent": sum(h.first_audio is None for h in heard),
    }


def passes(report: dict, bound_ms: float) -> bool:
    """The sweep's gate: every request served, no gap, p95 audible first audio in bound."""
    p95 = report["first_audio_ms"]["p95"]
    return (report["requests"] > 0 and report["served"] == report["requests"]
            and report["with_gap"] == 0 and report["silent"] == 0
            and p95 is not None and p95 <= bound_ms)


# ---------------------------------------------------------------------------- output
HEADER = ("| backend | via | rate/s | served | refused 503 | other errors | TTFB p95 | first audio "
          "p50/p95/p99 ms | with gap | largest gap ms | gap total ms | audio-s/s | peak in "
          "flight | late dispatch | server late chunks | load avg |")


def row(backend: str, r: dict) -> str:
    fa = r["first_audio_ms"]
    refused = r["errors"].get("503", 0)  # with Retry-After (`refusal_status`)
    other = sum(v for k, v in r["errors"].items() if k != "503")
    gap_share = f"{r['with_gap']} ({100 * r['with_gap'] / max(1, r['served']):.0f}%)"
    server_late = "-" if r.get("server") is None else r["server"]["late_chunks"]
    return (f"| {backend} | {r['transport']} | {r['rate']:g} | {r['served']}/{r['requests']} | "
            f"{refused} | {other} | {r['ttfb_ms']['p95']} | {fa['p50']}/{fa['p95']}/{fa['p99']} | "
            f"{gap_share} | {r['gap_max_ms']} | {r['gap_total_ms']} | {r['audio_s_per_s']} | "
            f"{r['peak_in_flight']} | {r['late_dispatches']} | {server_late} | "
            f"{r['load_avg_after'][0]} |")


# ---------------------------------------------------------------------------- servers
def _profile():
    from serve_app.tools.profiles import load_profile

    return load_profile(REPO / "configs" / "cpu-tiny.yaml")


def _engine_config(backend: str, overrides: dict):
    from deployments.engine.tiny import default_tiny_models_dir

    engine = _profile().args.custom_voice.engine
    model = str(default_tiny_models_dir() / "custom_voice")
    return engine.model_copy(update={"backend": backend, "model": model, **overrides})


#: --schedules: the batched backend's settings under each name: engine overrides, and under
#: "streaming" the chunking's. "paced": the CPU profile as shipped (issue 18's scheduler:
#: pacing, 3-frame first and smallest chunks, admission within a 0.5 s first-audio bound, or
#: --first-audio-bound); "paced-1": the same with one-frame first and smallest chunks (the
#: profile before stop 36); "fixed": pacing off (first_chunk_frames, then chunk_frames);
#: "paced-open": pacing without admission (no bound); "-nohold": no far-ahead hold
#: (pacing_ahead_s 60: a held stream keeps its slot longer)
SCHEDULES = {"fixed": {"pacing": False},
             "paced": {"pacing": True},
             "paced-1": {"pacing": True, "pacing_min_chunk_frames": 1,
                         "streaming": {"first_chunk_frames": 1}},
             "paced-open": {"pacing": True, "first_audio_bound_s": None},
             "paced-open-nohold": {"pacing": True, "first_audio_bound_s": None,
                                   "pacing_ahead_s": 60}}


def _split(schedule: dict) -> tuple[dict, dict]:
    """A schedule's (engine overrides, streaming overrides)."""
    engine = {k: v for k, v in schedule.items() if k != "streaming"}
    return engine, dict(schedule.get("streaming", {}))


def _streaming(overrides: dict):
    return _profile().args.custom_voice.streaming.model_copy(update=overrides)


def replica_counters(handle) -> dict | None:
    """The late chunks and refusals of the CustomVoice replica behind `handle` (a deployment
    handle made on the driver's main thread), read through `ModelServer.stream_stats`; None
    for the reference backend, which keeps neither. Blocks: call it off the event loop."""
    stats = handle.stream_stats.remote().result(timeout_s=30)
    return ({"late_chunks": stats["late_chunks"], "refused": stats["refused"]}
            if "late_chunks" in stats else None)


class Graph:
    """The CPU profile's graph (CustomVoice only, auth off) on a fresh local Ray."""

    def __init__(self) -> None:
        os.environ["AUTH_ENABLED"] = "false"
        os.environ.setdefault("RAY_AUTH_MODE", "disabled")
        os.environ["QTTS_DATA_DIR"] = tempfile.mkdtemp(prefix="qtts-load-")
        import ray
        from ray import serve

        from serve_app.tools.ray_env import apply_serve_env
        from tests.graph.conftest import free_port

        self.port = free_port()
        apply_serve_env()  # the shipped Ray Serve settings (serve_app/tools/ray_env.py)
        ray.init(address="local", num_cpus=8, include_dashboard=False, logging_level="WARNING",
                 log_to_driver=False)
        serve.start(http_options={"host": "127.0.0.1", "port": self.port})
        self.url = f"http://127.0.0.1:{self.port}"

    def deploy(self, backend: str, overrides: dict) -> None:
        from ray import serve

        from serve_app.app.builder import build_graph

        profile = _profile()
        cv = profile.args.custom_voice
        engine, streaming = _split(overrides)
        app_args = profile.args.model_copy(update={
            "custom_voice": cv.model_copy(update={
                "engine": cv.engine.model_copy(update={"backend": backend, **engine}),
                "streaming": _streaming(streaming)}),
            "voice_design": None, "voice_clone": None})
        serve.run(build_graph(app_args, profile.overrides), name=profile.app_name,
                  route_prefix=profile.route_prefix)
        self._replica = serve.get_deployment_handle("CustomVoice", app_name=profile.app_name)

    def server_counters(self) -> dict | None:
        return replica_counters(self._replica)

    def close(self) -> None:
        import ray
        from ray import serve

        serve.shutdown()
        ray.shutdown()


def _transports(names: list[str], url: str, key: str | None,
                counters: Callable[[], dict | None] | None = None) -> list[Transport]:
    out: list[Transport] = []
    for name in names:
        if name == "pcm":
            out.append(HttpTransport(url, key, "audio"))
        elif name == "sse":
            out.append(HttpTransport(url, key, "sse"))
        elif name == "ws":
            out.append(SessionTransport(url, key))
    for transport in out:
        transport.counters = counters
    return out


async def _rates(backend: str, transports: list[Transport], rates: list[float],
                 prompts: list[Prompt], args: argparse.Namespace) -> list[dict]:
    reports = []
    for transport in transports:
        await transport.open()
        try:
            warm = Call(prompts[0], 0, 8)  # the path warm before the clock starts
            await transport.send(warm, time.perf_counter())
            for rate in rates:
                r = await run_rate(transport, prompts, rate, seconds=args.seconds,
                                   warmup=args.warmup, arrivals=args.arrivals,
                                   frames_per_word=args.frames_per_word, seed=args.seed)
                r["backend"] = backend
                r["passes"] = passes(r, args.bound_ms)
                reports.append(r)
                print(row(backend, r), flush=True)
                if args.sweep and not r["passes"]:
                    break
        finally:
            await transport.close()
    return reports


def _in_process(backend: str, overrides: dict):
    from deployments.engine import TTSEngine

    engine_overrides, streaming = _split(overrides)
    engine = TTSEngine.load(_engine_config(backend, engine_overrides))
    return engine, EngineTransport(engine, _streaming(streaming))


async def _interleaved(plan: list[tuple[str, str, dict, list[float]]], prompts: list[Prompt],
                       args: argparse.Namespace) -> list[dict]:
    """--rounds N with the in-process engine only: every schedule's engine loaded side by side,
    then N rounds of (each rate, each schedule in turn), each round with its own arrivals
    (seed + round): a shared machine drifts by tens of percent within a minute, and this way
    every schedule sees the same drift. Rows per round, then per schedule and rate the sums."""
    loaded = [(label, *_in_process(backend, overrides), rates)
              for label, backend, overrides, rates in plan]
    reports: list[dict] = []
    try:
        for round_ in range(args.rounds):
            for rate in sorted({r for *_, rates in loaded for r in rates}):
                for label, _, transport, rates in loaded:
                    if rate not in rates:
                        continue
                    r = await run_rate(transport, prompts, rate, seconds=args.seconds,
                                       warmup=args.warmup, arrivals=args.arrivals,
                                       frames_per_word=args.frames_per_word,
                                       seed=args.seed + round_)
                    r.update(backend=label, round=round_, passes=passes(r, args.bound_ms))
                    reports.append(r)
                    print(row(label, r), flush=True)
    finally:
        for _, engine, *_ in loaded:
            engine.close()
    print(f"\nsums over {args.rounds} rounds (in process)\n\n| backend | rate/s | served | "
          "refused 503 | with gap | server late chunks | p95 first audio ms per round |\n"
          "|---|---|---|---|---|---|---|")
    for label, *_, rates in loaded:
        for rate in rates:
            rs = [r for r in reports if r["backend"] == label and r["rate"] == rate]
            print(f"| {label} | {rate:g} | {sum(r['served'] for r in rs)}/"
                  f"{sum(r['requests'] for r in rs)} | {sum(r['errors'].get('503', 0) for r in rs)}"
                  f" | {sum(r['with_gap'] for r in rs)} | "
                  f"{sum(r['server']['late_chunks'] for r in rs if r['server'])} | "
                  f"{', '.join(str(r['first_audio_ms']['p95']) for r in rs)} |")
    return reports


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rates", type=float, nargs="+", default=[1, 2, 4, 8],
                    help="batched backend: requests per second")
    ap.add_argument("--reference-rates", type=float, nargs="*", default=[0.5, 1],
                    help="reference backend (empty: skip it)")
    ap.add_argument("--seconds", type=float, default=30.0, help="measured window per rate")
    ap.add_argument("--warmup", type=float, default=5.0, help="arrivals before it, not counted")
    ap.add_argument("--arrivals", choices=["poisson", "constant"], default="poisson")
    ap.add_argument("--prompts", type=Path, default=DEFAULT_PROMPTS)
    ap.add_argument("--frames-per-word", type=float, default=4.0,
                    help="forced length: codec frames (80 ms) per word of the prompt")
    ap.add_argument("--transports", nargs="*", choices=TRANSPORTS[:3], default=["pcm"],
                    help="HTTP transports (none: with --engine, the in-process engine only)")
    ap.add_argument("--schedules", nargs="+", choices=sorted(SCHEDULES), default=["fixed", "paced"],
                    help="batched backend: paced (issue 18's scheduler) and/or fixed (main's "
                    "schedule before it, pacing off), side by side")
    ap.add_argument("--first-audio-bound", type=float,
                    help="paced: engine first_audio_bound_s (default: the profile's)")
    ap.add_argument("--engine", action="store_true",
                    help="also the in-process engine (no HTTP), beside the HTTP transports")
    ap.add_argument("--rounds", type=int, default=1,
                    help="with --engine and no --transports: rounds of every schedule in turn "
                    "per rate (the schedules' engines loaded side by side), and their sums")
    ap.add_argument("--sweep", action="store_true",
                    help="per backend, stop at the first rate that fails the gate")
    ap.add_argument("--bound-ms", type=float, default=250.0,
                    help="the gate's p95 audible first audio bound")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--url", help="a running server (its own backend) instead of a local graph")
    ap.add_argument("--key", help="its API key")
    ap.add_argument("--json", type=Path, help="write every figure here")
    args = ap.parse_args()
    prompts = load_prompts(args.prompts)
    import torch

    torch.set_num_threads(1)
    from deployments.engine.tiny import default_tiny_models_dir, ensure_tiny_models

    root = default_tiny_models_dir()
    ensure_tiny_models(root)
    os.environ["QTTS_TINY_MODELS_DIR"] = str(root)
    plan: list[tuple[str, str, dict, list[float]]] = []  # label, backend, overrides, rates
    for name in args.schedules:
        overrides = dict(SCHEDULES[name])
        if name.startswith("paced") and "open" not in name and args.first_audio_bound is not None:
            overrides["first_audio_bound_s"] = args.first_audio_bound
        label = "batched" if len(args.schedules) == 1 else f"batched/{name}"
        plan.append((label, "batched", overrides, args.rates))
    if args.reference_rates:
        plan.append(("reference", "reference", {}, args.reference_rates))
    print(f"open-loop {args.arrivals} arrivals, {args.warmup:g} s warm-up + {args.seconds:g} s "
          f"measured per rate, {len(prompts)} prompts from {args.prompts.name}, "
          f"{args.frames_per_word:g} frames per word, {os.cpu_count()} cores, load average "
          f"{os.getloadavg()[0]:.2f}; gate: no gap, all served, p95 first audio <= "
          f"{args.bound_ms:g} ms\n")
    print(HEADER)
    print("|" + "---|" * (HEADER.count("|") - 1))
    reports: list[dict] = []
    graph = None
    try:
        if args.url:
            reports += asyncio.run(_rates("server", _transports(args.transports, args.url, args.key),
                                          args.rates, prompts, args))
        elif args.transports:
            graph = Graph()
            for label, backend, overrides, rates in plan:
                graph.deploy(backend, overrides)
                transports = _transports(args.transports, graph.url, None, graph.server_counters)
                reports += asyncio.run(_rates(label, transports, rates, prompts, args))
        if args.engine and args.rounds > 1 and not args.transports:
            reports += asyncio.run(_interleaved(plan, prompts, args))
        elif args.engine:
            for label, backend, overrides, rates in plan:
                engine, transport = _in_process(backend, overrides)
                try:
                    reports += asyncio.run(_rates(label, [transport], rates, prompts, args))
                finally:
                    engine.close()
    finally:
        if graph is not None:
            graph.close()
    if args.sweep:
        print()
        for backend, *_ in plan:
            for via in sorted({r["transport"] for r in reports if r["backend"] == backend}):
                ok = [r["rate"] for r in reports if r["backend"] == backend
                      and r["transport"] == via and r["passes"]]
                print(f"{backend} via {via}: highest gap-free rate with p95 first audio <= "
                      f"{args.bound_ms:g} ms: {max(ok) if ok else 'none of those tried'}")
    if args.json:
        args.json.write_text(json.dumps({
            "command": " ".join(sys.argv), "cores": os.cpu_count(),
            "load_avg_end": os.getloadavg(), "runs": reports}, indent=1))


if __name__ == "__main__":
    main()
