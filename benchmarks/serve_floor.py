"""What Ray Serve itself costs a streamed request, beside the engine (prints, asserts nothing).

Issue 18's item 5 asks the HTTP graph for 0.85x the in-process engine's throughput at 16
streams of 50 frames. On a machine whose cores the engine fills, throughput follows CPU, so
that needs everything the graph adds to a request (the proxy, the ingress, the model replica's
Serve machinery, Ray's daemons) under 1/0.85 - 1 = 17.6% of the engine's own CPU per request.
This benchmark splits what the graph adds into Ray Serve's part and ours:

- **in process**: the CPU profile's engine (configs/cpu-tiny.yaml) in this process, n streams
  started at once, as `benchmarks/engine.py --vs-engine`; each stream's chunks (when, how
  many samples and frames) are recorded.
- **floor**: Ray Serve with nothing of ours on the path, deployed beside the graph: a model
  deployment that replays the round's recorded chunks (the engine's own `AudioChunk` items,
  at the recorded times, no model work) to an ingress (FastAPI, as ours) that relays them as
  a pcm StreamingResponse, encoded as ours does. Same Ray, proxy, Serve settings
  (serve_app/tools/ray_env.py), replica options and client as the graph.
- **graph**: the CPU profile's graph (CustomVoice only, batched), the same requests.

Rounds alternate the three (a shared machine drifts by tens of percent within a minute).
Printed per round: audio-s/s, TTFA p95 and the engine's chunks per stream; with the medians,
each process's CPU milliseconds per request (psutil; the engine is this process's CPU in the
in-process rounds, where the client is in the others), what the floor and the graph add to
the engine's CPU per request, the HTTP / in-process ratio that leaves where the engine fills
the cores (engine / (engine + added)), the share of the cores each mode kept busy (the
in-process engine, one torch thread, leaves part of them idle, which the graph's processes
then use) and the measured throughput ratio. The controller, GCS and raylet are shared by
both apps and burn CPU when idle: their figures are their CPU over the round, whatever it
served. Run it on a machine with no other Ray.

    .venv/bin/python benchmarks/serve_floor.py                      # 16 streams, 50 frames
    .venv/bin/python benchmarks/serve_floor.py --concurrency 16 --frames 200 --rounds 3
"""

# (no `from __future__ import annotations`: FastAPI reads the route's annotations in the replica)
import argparse
import asyncio
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
from fastapi import FastAPI, Request  # noqa: E402
from fastapi.responses import StreamingResponse  # noqa: E402
from ray import serve  # noqa: E402

from benchmarks import engine as bench  # noqa: E402
from deployments.audio.codecs import pcm16le  # noqa: E402
from deployments.engine.types import AudioChunk  # noqa: E402

FLOOR_APP = "floor"
FLOOR_PREFIX = "/floor"
#: The floor's processes, by role (the proxy and Ray's daemons are the graph's).
FLOOR_PROCESSES = bench.GRAPH_PROCESSES | {"replica": f"ServeReplica:{FLOOR_APP}:FloorModel",
                                           "ingress": f"ServeReplica:{FLOOR_APP}:FloorIngress"}


@serve.deployment(ray_actor_options={"num_cpus": 0.2}, health_check_period_s=10)
class FloorModel:
    """The model deployment with no model: request i replays stream i's recorded chunks."""

    def __init__(self) -> None:
        self._schedules: list[list[tuple[float, int, int]]] = []
        self._sample_rate = 0
        self._noise = np.random.default_rng(0).uniform(-0.5, 0.5, 2_000_000).astype(np.float32)

    def load(self, schedules: list[list[tuple[float, int, int]]], sample_rate: int) -> None:
        self._schedules = schedules
        self._sample_rate = sample_rate

    async def stream(self, i: int):
        t0 = time.perf_counter()
        schedule = self._schedules[i]
        made = 0
        for index, (at, samples, frames) in enumerate(schedule):
            wait = t0 + at - time.perf_counter()
            if wait > 0:
                await asyncio.sleep(wait)
            made += frames
            final = index == len(schedule) - 1
            yield AudioChunk(audio=self._noise[:samples].copy(), sample_rate=self._sample_rate,
                             index=index, frames=frames, final=final, total_frames=made,
                             generation_seconds=time.perf_counter() - t0)


floor_http = FastAPI()


@serve.deployment(ray_actor_options={"num_cpus": 0.2}, max_ongoing_requests=1024)
@serve.ingress(floor_http)
class FloorIngress:
    """The ingress with nothing of ours on the path: relay the model's chunks as 16-bit pcm
    (with the project's pcm encoder, as the graph's ingress encodes them)."""

    def __init__(self, model) -> None:
        self._model = model

    @floor_http.post("/v1/audio/speech")
    async def speech(self, request: Request) -> StreamingResponse:
        body = await request.json()
        chunks = self._model.options(stream=True).stream.remote(int(body["seed"]))

        async def pcm():
            async for chunk in chunks:
                if chunk.audio.size:
                    yield pcm16le(chunk.audio)

        return StreamingResponse(pcm(), media_type="audio/pcm")


def _role_ms(rows: list[dict], role: str) -> float:
    return float(np.median([r[f"cpu_ms_{role}"] for r in rows if f"cpu_ms_{role}" in r]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--frames", type=int, default=50)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    import psutil
    import ray

    n, frames = args.concurrency, args.frames
    profile = bench.cpu_profile()
    cv = profile.args.custom_voice
    engine, chunking = bench.local_engine(frames, cv, n)
    sample_rate = engine.info.sample_rate
    base_url = bench.start_local_serve()
    me = {"client": psutil.Process()}
    try:
        bench.deploy_cpu_graph(profile, "batched", n, frames)
        # the options engine.deploy_cpu_graph gives CustomVoice
        model = FloorModel.options(max_ongoing_requests=2 * n, max_queued_requests=4 * n).bind()
        serve.run(FloorIngress.bind(model), name=FLOOR_APP, route_prefix=FLOOR_PREFIX)
        floor_model = serve.get_deployment_handle("FloorModel", app_name=FLOOR_APP)
        graph_procs = bench.graph_processes() | me
        floor_procs = bench.graph_processes(FLOOR_PROCESSES) | me
        schedules: list = []
        bench.run(engine, n, min(frames, 32), chunking, schedules)  # warm this batch size
        floor_model.load.remote(schedules, sample_rate).result()
        floor_path = f"{FLOOR_PREFIX}/v1/audio/speech"
        bench.http_run(base_url, n, min(frames, 32), path=floor_path)
        bench.http_run(base_url, n, min(frames, 32))
        print(f"{n} streams of {frames} frames ({frames * 0.08:.1f} s), streaming pcm, "
              f"{os.cpu_count()} cores, chunks as the profile ({cv.streaming})")
        print(f"{'round':>5} | {'mode':>10} | {'audio-s/s':>9} | {'TTFA p95':>9} | "
              f"{'chunks/stream':>13}")
        rows: dict[str, list[dict]] = {"in-proc": [], "floor": [], "graph": []}
        for k in range(args.rounds):
            r = bench.with_cpu(lambda: bench.run(engine, n, frames, chunking, schedules),
                                me, n)
            r["chunks"] = float(np.mean([len(s) for s in schedules]))
            rows["in-proc"].append(r)
            floor_model.load.remote(schedules, sample_rate).result()
            rows["floor"].append(bench.with_cpu(
                lambda: bench.http_run(base_url, n, frames, path=floor_path), floor_procs, n))
            rows["graph"].append(bench.with_cpu(
                lambda: bench.http_run(base_url, n, frames), graph_procs, n))
            for mode in rows:
                r = rows[mode][-1]
                chunks = f"{r['chunks']:13.1f}" if "chunks" in r else f"{'':>13}"
                print(f"{k + 1:>5} | {mode:>10} | {r['audio_s_per_s']:9.2f} | "
                      f"{r['ttfa_p95'] * 1000:7.0f}ms | {chunks}", flush=True)
        _report(rows)
        print(f"load average at the end: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    finally:
        engine.close()
        serve.shutdown()
        ray.shutdown()


def _report(rows: dict[str, list[dict]]) -> None:
    roles = ("replica", "ingress", "proxy", "controller", "raylet", "gcs", "client")
    engine_ms = _role_ms(rows["in-proc"], "client")
    print(f"\nCPU ms per request, medians of {len(rows['in-proc'])} rounds "
          f"(in process: the engine, this process):")
    print(f"{'mode':>10} | " + " | ".join(f"{r:>10}" for r in roles) + f" | {'graph':>8}")
    print(f"{'in-proc':>10} | " + " | ".join(f"{'':>10}" for _ in roles[:-1])
          + f" | {engine_ms:10.1f} | {'':>8}")
    graph_ms = {}
    for mode in ("floor", "graph"):
        ms = {r: _role_ms(rows[mode], r) for r in roles}
        graph_ms[mode] = sum(v for r, v in ms.items() if r != "client")
        print(f"{mode:>10} | " + " | ".join(f"{ms[r]:10.1f}" for r in roles)
              + f" | {graph_ms[mode]:8.1f}")
    floor_extra = graph_ms["floor"]
    graph_extra = graph_ms["graph"] - engine_ms  # its replica does the engine's work
    med = {m: float(np.median([r["audio_s_per_s"] for r in rows[m]])) for m in rows}
    busy = {m: float(np.median([r.get("cores_busy", float("nan")) for r in rows[m]]))
            for m in rows}
    print(f"\nRay Serve's floor adds {floor_extra:.1f} ms per request to the engine's "
          f"{engine_ms:.1f} ({floor_extra / engine_ms:.0%}); the graph adds {graph_extra:.1f} "
          f"({graph_extra / engine_ms:.0%}), {graph_extra - floor_extra:.1f} of it beyond the "
          f"floor.\nWhere the engine fills the cores, HTTP keeps about engine / (engine + what "
          f"is added): x{engine_ms / (engine_ms + floor_extra):.2f} with the floor alone, "
          f"x{engine_ms / (engine_ms + graph_extra):.2f} with the graph's (x0.85 needs under "
          f"17.6%).\nCores busy, medians: in process {busy['in-proc']:.0%}, floor "
          f"{busy['floor']:.0%}, graph {busy['graph']:.0%}.\nThroughput, medians: in process "
          f"{med['in-proc']:.1f} audio-s/s, graph {med['graph']:.1f} "
          f"(x{med['graph'] / med['in-proc']:.2f}); the floor replays the engine's chunk times "
          f"({med['floor']:.1f}).")


if __name__ == "__main__":
    main()
