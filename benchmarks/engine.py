"""Reference backend vs batched backend, side by side, in one process (prints, asserts nothing).

N concurrent streaming requests with a forced length (`min_frames`, EOS suppressed until
then, `max_new_tokens = frames + 1`), all started at once, on the tiny CustomVoice checkpoint
(or `--model DIR`). Per backend and concurrency: aggregate audio seconds per wall second,
time to first audio p50/p95, and the real-time factor per stream (wall seconds of a stream /
its audio seconds; < 1 is faster than real time).

    .venv/bin/python benchmarks/engine.py                      # 1, 4, 16, 64 streams, 50 frames
    .venv/bin/python benchmarks/engine.py --concurrency 1 16 --frames 40
"""

from __future__ import annotations

import argparse
import os
import threading
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

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


def run(engine: TTSEngine, n: int, frames: int, chunking: StreamChunking) -> dict:
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
    rtf = [s / a for s, a in zip(spans, audio_s, strict=True) if a > 0]
    return {"audio_s_per_s": sum(audio_s) / wall, "ttfa_p50": float(np.percentile(ttfa, 50)),
            "ttfa_p95": float(np.percentile(ttfa, 95)), "rtf_p50": float(np.median(rtf)),
            "wall": wall, "audio": sum(audio_s)}


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
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model = args.model
    if model is None:
        root = default_tiny_models_dir()
        ensure_tiny_models(root)
        model = str(root / ModelKind.CUSTOM_VOICE.value)
    slots = max(args.concurrency)
    base = {"model": model, "device": args.device, "dtype": args.dtype, "warmup": False,
            "max_slots": slots, "max_waiting": slots, "max_new_tokens": args.frames + 8}
    ref = TTSEngine.load(EngineConfig(backend="reference", **base))
    bat = TTSEngine(ref.model, EngineConfig(backend="batched", **base), device=ref.info.device,
                    dtype=getattr(torch, args.dtype))
    chunking = StreamChunking(first_chunk_frames=1, chunk_frames=6, left_context_frames=25)
    for engine in (ref, bat):  # warm both paths
        run(engine, 1, 4, chunking)
    print(f"model {model} ({ref.info.kind.value}, {ref.info.device}/{ref.info.dtype}), "
          f"{args.frames} frames per request ({args.frames * 0.08:.1f} s), torch threads "
          f"{args.threads}, chunks 1 then 6 frames, left context 25")
    print(f"{'streams':>7} | {'backend':>9} | {'audio-s/s':>9} | {'TTFA p50':>9} | "
          f"{'TTFA p95':>9} | {'RTF/stream':>10} | {'wall s':>7}")
    rows = {}
    for n in args.concurrency:
        for name, engine in (("reference", ref), ("batched", bat)):
            if name == "reference" and n > args.reference_max:
                print(f"{n:>7} | {name:>9} | {'skipped (--reference-max)':>56}")
                continue
            r = run(engine, n, args.frames, chunking)
            rows[(n, name)] = r
            print(f"{n:>7} | {name:>9} | {r['audio_s_per_s']:9.2f} | {r['ttfa_p50'] * 1000:7.0f}ms"
                  f" | {r['ttfa_p95'] * 1000:7.0f}ms | {r['rtf_p50']:10.3f} | {r['wall']:7.2f}")
        if (n, "reference") in rows and (n, "batched") in rows:
            a, b = rows[(n, "reference")], rows[(n, "batched")]
            print(f"{'':>7}   batched / reference: throughput x{b['audio_s_per_s'] / a['audio_s_per_s']:.1f}"
                  f", RTF x{b['rtf_p50'] / a['rtf_p50']:.2f}")
    bat.close()


if __name__ == "__main__":
    main()
