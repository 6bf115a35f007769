"""Ray Serve's own settings for this graph's serving path, in one place.

Ray reads these from the environment when a process starts (a replica, the proxy, a driver
holding handles), so they go in before `ray.init` when we start Ray ourselves
(`apply_serve_env`: `qtts demo`, the tests and the benchmarks), into every config's
`runtime_env.env_vars` (the replicas of a `serve deploy`; a test keeps the configs equal to
`SERVE_ENV`), and into the KubeRay pods' and the docker compose container's env (the proxy
reads its node's environment, which runtime_env does not reach).

- `RAY_SERVE_RUN_USER_CODE_IN_SEPARATE_THREAD=0` and `RAY_SERVE_RUN_ROUTER_IN_SEPARATE_LOOP=0`:
  a replica runs its handlers and its handles' router on its main event loop instead of a
  thread and a loop of their own, so a streamed chunk crosses no extra threads (Ray's
  "throughput-optimized serving"; docs.ray.io serve/advanced-guides/performance). Measured
  on the CPU demo (docs/streaming.md), 16 streams of 16 s through HTTP, medians of three
  rounds in two runs a minute apart: 46.0 audio-s/s against 42.0 with Ray's defaults; in
  an open-loop run at 4 and 8 req/s, no stream gapped where the defaults gapped 20% and
  12%. The price: a handler that blocks its loop now also delays the replica's own calls
  (health checks, metrics). Model work runs on the engine's threads; the ingress's platform
  calls (database, Redis) hold its loop for milliseconds.

- `RAY_max_direct_call_object_size=1048576` (Ray's default: 100 KiB): a Ray item up to 1 MiB
  travels inline in the reply instead of through the node's object store. A streamed chunk
  is such an item twice (the model replica's float PCM to the ingress, 368 KB for 48 frames;
  the ingress's encoded audio to the proxy, 184 KB as pcm), and through the object store
  each costs a put, a seal, a fetch and the raylet's bookkeeping. The sender decides, so the
  replicas' runtime_env carries it to the replicas of a `serve deploy`. Measured on the CPU
  demo (`benchmarks/engine.py --http --vs-engine --concurrency 16 --frames 200 --rounds 6`,
  three runs each, in turn): HTTP against in process x0.83, x0.90, x0.84 with it, x0.67,
  x0.73, x0.76 without; the machine's CPU per second of audio through HTTP x1.16-1.21 of in
  process against x1.28-1.40 (docs/streaming.md). What a slow reader has not read yet
  waits in the ingress's and the proxy's memory instead of the object store (the same
  bytes; the object store could have spilled them to disk).

An operator's own value wins: `apply_serve_env` only fills what is unset.
"""

from __future__ import annotations

import os

SERVE_ENV: dict[str, str] = {
    "RAY_SERVE_RUN_USER_CODE_IN_SEPARATE_THREAD": "0",
    "RAY_SERVE_RUN_ROUTER_IN_SEPARATE_LOOP": "0",
    "RAY_max_direct_call_object_size": "1048576",
}


def apply_serve_env() -> None:
    """Put `SERVE_ENV` into this process's environment (before `ray.init` starts a local
    Ray, whose processes inherit it); values already set are kept."""
    for name, value in SERVE_ENV.items():
        os.environ.setdefault(name, value)
