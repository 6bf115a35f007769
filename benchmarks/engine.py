"""Reference backend vs batched backend, side by side, in one process (prints, asserts nothing).

N concurrent streaming requests with a forced length (`min_frames`, EOS suppressed until
then, `max_new_tokens = frames + 1`), all started at once, on the tiny CustomVoice checkpoint
(or `--model DIR`). Per backend and concurrency: aggregate audio seconds per wall second,
time to first audio p50/p95, and the real-time factor per stream (wall seconds of a stream /
its audio seconds; < 1 is faster than real time).

    .venv/bin/python benchmarks/engine.py                      # 1, 4, 16, 64 streams, 50 frames
    .venv/bin/python benchmarks/engine.py --concurrency 1 16 --frames 40
    .venv/bin/python benchmarks/engine.py --http               # the same through the HTTP graph
    .venv/bin/python benchmarks/engine.py --compile none compile --no-reference \
        --concurrency 1 16 64 --frames 24                      # engine.compile off vs on

`--compile`: one batched engine per mode (engine.compile), side by side; the batch buckets are
the concurrencies (`engine.batch_buckets`), so each concurrency is one compiled graph, built
by a warm-up run of the same shape before it is measured (its compile time is printed).

`--http`: the same table through the whole serve graph (proxy -> ingress -> CustomVoice,
POST /v1/audio/speech with stream_format "audio", pcm, `min_frames`/`max_new_tokens` in the
body) on a fresh local Ray (8 logical CPUs, no dashboard, platform auth off, data in a temp
dir, the shipped Ray Serve settings of serve_app/tools/ray_env.py unless `--ray-defaults`).
The CPU profile (configs/cpu-tiny.yaml, CustomVoice only) is deployed once with
engine.backend reference and once with batched, one after the other in the same run.
`--vs-engine`: batched only, and the same engine config also loaded in this process; per
concurrency, `--rounds` alternating rounds of in-process then HTTP (a shared machine drifts
by tens of percent within a minute), then the ratio of the medians. TTFA is measured to the
first audio bytes the client reads; RTF per stream = wall seconds of the stream / its audio
seconds. With the medians, the machine's CPU seconds per second of audio made in each mode
(every process's, from /proc/stat) and the share of its cores busy: on a machine whose cores
the in-process engine already fills, HTTP's throughput ratio is about the inverse of its CPU
ratio. And each graph process's CPU milliseconds per request through HTTP (the replica,
ingress, proxy, Serve controller, raylet and GCS; read with psutil, so run it on a machine
with no other Ray): what a request costs the graph beside the model's work.

    .venv/bin/python benchmarks/engine.py --http --vs-engine --concurrency 1 16 --frames 200
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from deployments.engine import (  # noqa: E402
    EngineConfig,
    ModelKind,
    StreamChunking,
    SynthesisRequest,
    TTSEngine,
)
from deployments.engine.tiny import default_tiny_models_dir, ensure_tiny_models  # noqa: E402

TEXT = "The quick brown fox jumps over the lazy dog."
SPEAKERS = ["vivian", "ryan", "serena", "aiden", "eric", "dylan", "sohee", "ono_anna", "uncle_fu"]


def run(engine: TTSEngine, n: int, frames: int, chunking: StreamChunking,
        schedules: list[list[tuple[float, int, int]]] | None = None) -> dict:
    """n streams started at once; with `schedules` (a list), each stream's chunks are kept in
    it as (seconds since the stream started, samples, frames), stream i at index i."""
    kept: list[list[tuple[float, int, int]]] = [[] for _ in range(n)]
    reqs = [SynthesisRequest(text=TEXT, speaker=SPEAKERS[i % len(SPEAKERS)], seed=i,
                             max_new_tokens=frames + 1, min_frames=frames) for i in range(n)]
    ttfa = [0.0] * n
    spans = [0.0] * n
    audio_s = [0.0] * n
    start = threading.Barrier(n + 1)

    def one(i: int) -> None:
        start.wait()
        t0 = time.perf_counter()
        first = None
        total = 0
        for chunk in engine.stream(reqs[i], chunking):
            if first is None and chunk.audio.size:
                first = time.perf_counter() - t0
            total += chunk.audio.size
            kept[i].append((time.perf_counter() - t0, chunk.audio.size, chunk.frames))
        spans[i] = time.perf_counter() - t0
        ttfa[i] = first if first is not None else spans[i]
        audio_s[i] = total / engine.info.sample_rate

    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    t0 = time.perf_counter()
    start.wait()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    if schedules is not None:
        schedules[:] = kept
    return _summary(ttfa, spans, audio_s, wall)


def _summary(ttfa: list[float], spans: list[float], audio_s: list[float], wall: float) -> dict:
    rtf = [s / a for s, a in zip(spans, audio_s, strict=True) if a > 0]
    return {"audio_s_per_s": sum(audio_s) / wall, "ttfa_p50": float(np.percentile(ttfa, 50)),
            "ttfa_p95": float(np.percentile(ttfa, 95)),
            "rtf_p50": float(np.median(rtf)) if rtf else float("nan"),
            "wall": wall, "audio": sum(audio_s)}


def http_run(base_url: str, n: int, frames: int, sample_rate: int = 24_000,
             path: str = "/v1/audio/speech") -> dict:
    """`run` through HTTP: n concurrent streaming pcm requests, started at once, read by one
    asyncio loop with aiohttp (Ray Serve's own HTTP client library; C parser). The client
    shares this machine's cores with the graph: 16 threads of httpx took 0.74 CPU-s per
    16 x 200 frames here, aiohttp 0.06 (docs/streaming.md)."""
    import aiohttp

    ttfa, spans, audio_s = [0.0] * n, [0.0] * n, [0.0] * n
    errors: list[str] = []

    async def one(session: aiohttp.ClientSession, go: asyncio.Event, i: int) -> None:
        body = {"model": "tts-1", "input": TEXT, "voice": SPEAKERS[i % len(SPEAKERS)], "seed": i,
                "response_format": "pcm", "stream_format": "audio",
                "max_new_tokens": frames + 1, "min_frames": frames}
        await go.wait()
        t0 = time.perf_counter()
        first = None
        size = 0
        async with session.post(path, json=body) as r:
            if r.status != 200:
                errors.append(f"{r.status} {(await r.read())[:200]!r}")
            async for piece in r.content.iter_any():
                if piece and first is None:
                    first = time.perf_counter() - t0
                size += len(piece)
        spans[i] = time.perf_counter() - t0
        ttfa[i] = first if first is not None else spans[i]
        audio_s[i] = size / 2 / sample_rate

    async def main() -> float:
        async with aiohttp.ClientSession(
                base_url=base_url, connector=aiohttp.TCPConnector(limit=0),
                timeout=aiohttp.ClientTimeout(sock_connect=600, sock_read=600)) as session:
            go = asyncio.Event()
            tasks = [asyncio.create_task(one(session, go, i)) for i in range(n)]
            await asyncio.sleep(0)  # every request waits at the start line
            go.set()
            t0 = time.perf_counter()
            await asyncio.gather(*tasks)
            return time.perf_counter() - t0

    wall = asyncio.run(main())
    if errors:
        print(f"  {len(errors)} of {n} requests failed, e.g. {errors[0]}")
    return _summary(ttfa, spans, audio_s, wall)


def _machine_busy_s() -> float | None:
    """CPU seconds every process on this machine has spent busy so far (Linux /proc/stat;
    None elsewhere): a round's difference counts the client, proxy, ingress and replica of an
    HTTP round alike, and the engine's threads of an in-process one."""
    try:
        ticks = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    except (OSError, ValueError):
        return None
    return (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")  # less idle, iowait


#: The graph's processes whose CPU an HTTP round reads, by what their title holds.
GRAPH_PROCESSES = {"replica": "ServeReplica:qwen3-tts:CustomVoice",
                   "ingress": "ServeReplica:qwen3-tts:TTSIngress", "proxy": "ProxyActor",
                   "controller": "ServeController", "raylet": "raylet", "gcs": "gcs_server"}


def graph_processes(marks: dict[str, str] = GRAPH_PROCESSES) -> dict:
    """The local graph's processes (psutil), by role (the keys of `marks`)."""
    import psutil

    found = {}
    for proc in psutil.process_iter(["cmdline"]):
        title = " ".join(proc.info["cmdline"] or [])
        for role, mark in marks.items():
            if mark in title.split(" ", 1)[0]:
                found[role] = proc
    return found


def _process_cpu_s(processes: dict) -> dict[str, float]:
    import psutil

    out = {}
    for role, proc in processes.items():
        try:
            times = proc.cpu_times()
        except psutil.Error:  # gone (a replica replaced): left out
            continue
        out[role] = times.user + times.system
    return out


def with_cpu(measure, processes: dict | None = None, requests: int = 0) -> dict:
    """A round's row with `cpu_per_audio_s` (machine CPU seconds per second of audio made)
    and `cores_busy` (the share of the machine's cores busy during the round); with
    `processes` (`graph_processes()`), `cpu_ms_<role>`: each one's CPU milliseconds per
    request of the round."""
    before, t0 = _machine_busy_s(), time.perf_counter()
    per_process = _process_cpu_s(processes) if processes else {}
    r = measure()
    after, wall = _machine_busy_s(), time.perf_counter() - t0
    if before is not None and after is not None and r["audio"] > 0:
        r["cpu_per_audio_s"] = (after - before) / r["audio"]
        r["cores_busy"] = (after - before) / (wall * (os.cpu_count() or 1))
    if per_process and requests:
        for role, cpu_s in _process_cpu_s(processes).items():
            if role in per_process:
                r[f"cpu_ms_{role}"] = (cpu_s - per_process[role]) * 1000 / requests
    return r


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_profile():
    """The CPU demo's profile (configs/cpu-tiny.yaml), with the tiny checkpoints built, the
    platform's keys off and its data in a temp dir (read here and in the replicas)."""
    from serve_app.tools.profiles import load_profile

    root = default_tiny_models_dir()
    ensure_tiny_models(root)
    os.environ["QTTS_TINY_MODELS_DIR"] = str(root)
    os.environ["AUTH_ENABLED"] = "false"
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    os.environ["QTTS_DATA_DIR"] = tempfile.mkdtemp(prefix="qtts-bench-")
    return load_profile(REPO / "configs" / "cpu-tiny.yaml")


def start_local_serve(ray_defaults: bool = False) -> str:
    """A fresh local Ray (8 logical CPUs, no dashboard) with Serve's proxy on a free port,
    the shipped Ray Serve settings unless `ray_defaults`; returns the proxy's base URL."""
    import ray
    from ray import serve

    from serve_app.tools.ray_env import apply_serve_env

    port = _free_port()
    if not ray_defaults:
        apply_serve_env()  # the shipped Ray Serve settings (serve_app/tools/ray_env.py)
    ray.init(address="local", num_cpus=8, include_dashboard=False, logging_level="WARNING",
             log_to_driver=False)
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    return f"http://127.0.0.1:{port}"


def deploy_cpu_graph(profile, backend: str, slots: int, frames: int) -> None:
    """The profile's graph with CustomVoice only, on `backend`, sized for `slots` streams of
    `frames` frames (waits until it is up)."""
    from ray import serve

    from serve_app.app.builder import build_graph

    cv = profile.args.custom_voice
    engine = cv.engine.model_copy(update={
        "backend": backend, "max_slots": slots, "max_waiting": slots,
        "max_new_tokens": max(cv.engine.max_new_tokens, frames + 8)})
    app_args = profile.args.model_copy(update={
        "custom_voice": cv.model_copy(update={"engine": engine}),
        "voice_design": None, "voice_clone": None})
    overrides = {k: dict(v) for k, v in profile.overrides.items()}
    overrides.setdefault("CustomVoice", {})["max_ongoing_requests"] = 2 * slots
    overrides["CustomVoice"]["max_queued_requests"] = 4 * slots
    serve.run(build_graph(app_args, overrides), name=profile.app_name,
              route_prefix=profile.route_prefix)


def http_main(args: argparse.Namespace) -> None:
    """The HTTP table: the CPU profile deployed with each backend in turn on one local Ray."""
    import ray
    from ray import serve

    profile = cpu_profile()
    slots = max(args.concurrency)
    cv = profile.args.custom_voice
    rows: dict = {}
    local = local_engine(args.frames, cv, slots) if args.vs_engine else None  # before Ray
    base_url = start_local_serve(args.ray_defaults)
    print(f"HTTP graph ({profile.path.name}, CustomVoice only, {os.cpu_count()} cores, Ray Serve "
          f"settings: {'Ray defaults' if args.ray_defaults else 'serve_app/tools/ray_env.py'}), "
          f"{args.frames} frames per request ({args.frames * 0.08:.1f} s), streaming pcm, "
          f"chunks as the profile ({profile.args.custom_voice.streaming})")
    print(f"{'streams':>7} | {'backend':>9} | {'audio-s/s':>9} | {'TTFA p50':>9} | "
          f"{'TTFA p95':>9} | {'RTF/stream':>10} | {'wall s':>7}")
    try:
        for backend in ("batched",) if args.vs_engine else ("reference", "batched"):
            t0 = time.perf_counter()
            deploy_cpu_graph(profile, backend, slots, args.frames)
            http_run(base_url, 1, 4)  # warm the path
            graph = graph_processes()
            print(f"{'':>7}   ({backend}: graph up and warm in {time.perf_counter() - t0:.0f} s)")
            for n in args.concurrency:
                if backend == "reference" and n > args.reference_max:
                    print(f"{n:>7} | {backend:>9} | {'skipped (--reference-max)':>56}")
                    continue
                if backend == "batched" and n > 1:
                    http_run(base_url, n, min(args.frames, 32))  # warm this batch size
                    if local is not None:
                        run(local[0], n, min(args.frames, 32), local[1])
                if local is None:
                    rows[(n, backend)] = r = http_run(base_url, n, args.frames)
                    _print_row(n, backend, r)
                    continue
                # --vs-engine: rounds of in-process then HTTP, so both see the same machine
                for _ in range(args.rounds):
                    r = with_cpu(lambda n=n: run(local[0], n, args.frames, local[1]))
                    rows.setdefault((n, "in-proc"), []).append(r)
                    _print_row(n, "in-proc", r)
                    r = with_cpu(lambda n=n: http_run(base_url, n, args.frames), graph, n)
                    rows.setdefault((n, "batched"), []).append(r)
                    _print_row(n, backend, r)
            serve.delete(profile.app_name)
        for n in args.concurrency:
            if (n, "reference") in rows and (n, "batched") in rows:
                a, b = rows[(n, "reference")], rows[(n, "batched")]
                print(f"{n:>7}   batched / reference: throughput "
                      f"x{b['audio_s_per_s'] / a['audio_s_per_s']:.1f}, "
                      f"RTF x{b['rtf_p50'] / a['rtf_p50']:.2f}")
            if (n, "in-proc") in rows and (n, "batched") in rows:
                a, b = _median_row(rows[(n, "in-proc")]), _median_row(rows[(n, "batched")])
                print(f"{n:>7}   medians of {args.rounds} rounds: in-process "
                      f"{a['audio_s_per_s']:.1f} audio-s/s, HTTP graph {b['audio_s_per_s']:.1f}: "
                      f"HTTP / in-process x{b['audio_s_per_s'] / a['audio_s_per_s']:.2f}, "
                      f"TTFA p95 x{b['ttfa_p95'] / a['ttfa_p95']:.2f}")
                if "cpu_per_audio_s" in a and "cpu_per_audio_s" in b:
                    print(f"{n:>7}   machine CPU-s per audio-s: in-process "
                          f"{a['cpu_per_audio_s']:.3f}, HTTP graph {b['cpu_per_audio_s']:.3f} "
                          f"(x{b['cpu_per_audio_s'] / a['cpu_per_audio_s']:.2f}); cores busy: "
                          f"in-process {a['cores_busy']:.0%}, HTTP graph {b['cores_busy']:.0%}")
                roles = [role for role in GRAPH_PROCESSES if f"cpu_ms_{role}" in b]
                if roles:
                    print(f"{n:>7}   CPU ms per request through HTTP: " + ", ".join(
                        f"{role} {b[f'cpu_ms_{role}']:.1f}" for role in roles))
        print(f"load average at the end: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    finally:
        if local is not None:
            local[0].close()
        serve.shutdown()
        ray.shutdown()


def local_engine(frames: int, cv, slots: int) -> tuple[TTSEngine, StreamChunking]:
    """`--vs-engine`: the CPU profile's CustomVoice engine (its config and chunking) in this
    process, run on the same requests as the HTTP rows (printed as backend `in-proc`)."""
    from deployments.checkpoints import resolve_checkpoint

    config = cv.engine.model_copy(update={
        "model": resolve_checkpoint(cv.engine.model), "max_slots": slots, "max_waiting": slots,
        "max_new_tokens": max(cv.engine.max_new_tokens, frames + 8)})
    engine = TTSEngine.load(config)
    print(f"in-process engine ({config.backend}, {config.num_threads} torch thread(s), "
          f"chunks {cv.streaming.first_chunk_frames} then {cv.streaming.chunk_frames})")
    run(engine, 1, 4, cv.streaming)
    return engine, cv.streaming


def _median_row(rs: list[dict]) -> dict:
    return {k: float(np.median([r[k] for r in rs])) for k in rs[0] if all(k in r for r in rs)}


def _print_row(n: int, name: str, r: dict) -> None:
    print(f"{n:>7} | {name:>9} | {r['audio_s_per_s']:9.2f} | {r['ttfa_p50'] * 1000:7.0f}ms"
          f" | {r['ttfa_p95'] * 1000:7.0f}ms | {r['rtf_p50']:10.3f} | {r['wall']:7.2f}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", help="checkpoint dir (default: the tiny CustomVoice)")
    ap.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 16, 64])
    ap.add_argument("--frames", type=int, default=50)
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--reference-max", type=int, default=16,
                    help="skip the reference backend above this concurrency (it serialises "
                    "streams: 64 x 50 frames takes minutes)")
    ap.add_argument("--codec", choices=["stateful", "left-context"], default="stateful",
                    help="the batched backend's chunk decoding: the decoder's own state (only "
                    "new frames decoded) or re-decoding 25 frames of left context per chunk")
    ap.add_argument("--compile", nargs="+", default=["none"],
                    choices=["none", "compile", "cudagraphs"],
                    help="engine.compile of the batched backend: one engine per mode")
    ap.add_argument("--compile-backend", default="inductor",
                    help="torch.compile backend of the compile mode (inductor; aot_eager to "
                    "check the graph without the C++ build)")
    ap.add_argument("--no-reference", action="store_true", help="skip the reference backend")
    ap.add_argument("--http", action="store_true",
                    help="through the HTTP graph (CPU profile, tiny CustomVoice) instead")
    ap.add_argument("--vs-engine", action="store_true",
                    help="with --http: the batched backend only, in process (the profile's "
                    "engine config) and through the HTTP graph, in alternating rounds, with "
                    "the ratio of their medians")
    ap.add_argument("--rounds", type=int, default=3,
                    help="with --vs-engine: rounds of (in process, HTTP) per concurrency")
    ap.add_argument("--ray-defaults", action="store_true",
                    help="with --http: Ray Serve's default settings instead of the shipped "
                    "ones (serve_app/tools/ray_env.py), to measure what they change")
    args = ap.parse_args()
    if args.http:
        if args.concurrency == [1, 4, 16, 64]:
            args.concurrency = [1, 4, 16]
        http_main(args)
        return
    torch.set_num_threads(args.threads)
    model = args.model
    if model is None:
        model = str(ensure_tiny_models()[ModelKind.CUSTOM_VOICE])
    slots = max(args.concurrency)
    base = {"model": model, "device": args.device, "dtype": args.dtype, "warmup": False,
            "max_slots": slots, "max_waiting": slots, "max_new_tokens": args.frames + 8}
    ref = TTSEngine.load(EngineConfig(backend="reference", **base))
    engines: list[tuple[str, TTSEngine]] = [] if args.no_reference else [("reference", ref)]
    for mode in args.compile:
        buckets = tuple(args.concurrency) if len(args.compile) > 1 or mode != "none" else None
        bat = TTSEngine(ref.model, EngineConfig(backend="batched", compile=mode,
                                                batch_buckets=buckets, **base),
                        device=ref.info.device, dtype=getattr(torch, args.dtype))
        bat.loop.output.stateful_codec = args.codec == "stateful"
        bat.loop.runner.compile_backend = args.compile_backend
        engines.append(("batched" if mode == "none" else mode, bat))
    chunking = StreamChunking(first_chunk_frames=1, chunk_frames=6, left_context_frames=25)
    for name, engine in engines:  # warm every path
        if name in ("reference", "batched"):
            run(engine, 1, 4, chunking)
    print(f"model {model} ({ref.info.kind.value}, {ref.info.device}/{ref.info.dtype}), "
          f"{args.frames} frames per request ({args.frames * 0.08:.1f} s), torch threads "
          f"{args.threads}, chunks 1 then 6 frames, left context 25 (reference); batched "
          f"codec decoding: {args.codec}; engine.compile: {' vs '.join(args.compile)}")
    print(f"{'streams':>7} | {'backend':>9} | {'audio-s/s':>9} | {'TTFA p50':>9} | "
          f"{'TTFA p95':>9} | {'RTF/stream':>10} | {'wall s':>7}")
    rows = {}
    for n in args.concurrency:
        for name, engine in engines:
            if name == "reference" and n > args.reference_max:
                print(f"{n:>7} | {name:>9} | {'skipped (--reference-max)':>56}")
                continue
            if name not in ("reference", "batched"):
                # compile this shape's graphs first (a server warms its buckets at start-up)
                runner = engine.loop.runner
                before = sum(runner.compile_seconds.values())
                run(engine, n, args.frames, chunking)
                spent = sum(runner.compile_seconds.values()) - before
                print(f"{'':>7}   ({name}: {len(runner.compile_seconds)} graphs so far; "
                      f"{spent:.1f} s compiling for {n} streams)", flush=True)
            elif name == "batched" and n > 1:
                # warm the kernels of this batch size first (oneDNN builds a primitive per new
                # shape: ~100 ms for the first chunk decode of 14 streams), as a running
                # server has; 32 frames reach the longest chunk window (25 + 6)
                run(engine, n, min(args.frames, 32), chunking)
            r = run(engine, n, args.frames, chunking)
            rows[(n, name)] = r
            _print_row(n, name, r)
        if (n, "reference") in rows and (n, "batched") in rows:
            a, b = rows[(n, "reference")], rows[(n, "batched")]
            print(f"{'':>7}   batched / reference: throughput x{b['audio_s_per_s'] / a['audio_s_per_s']:.1f}"
                  f", RTF x{b['rtf_p50'] / a['rtf_p50']:.2f}")
        for name, _ in engines:
            if name not in ("reference", "batched") and (n, "batched") in rows and (n, name) in rows:
                a, b = rows[(n, "batched")], rows[(n, name)]
                print(f"{'':>7}   {name} / eager: throughput x{b['audio_s_per_s'] / a['audio_s_per_s']:.2f}, "
                      f"TTFA p95 x{b['ttfa_p95'] / a['ttfa_p95']:.2f}", flush=True)
    for name, engine in engines:
        if name != "reference":
            engine.close()

if __name__ == "__main__":
    main()
