"""One script for a lent GPU: what the batched engine does on the card, in minutes.

    .venv/bin/python benchmarks/gpu_suite.py --gpu            # on a CUDA machine, ~8 minutes
    .venv/bin/python benchmarks/gpu_suite.py --tiny           # CPU, tiny models, < 1 minute (CI)

`--gpu`: random-weight models with the real shapes of the 0.6B and 1.7B CustomVoice
checkpoints (`deployments/engine/real_shape.py`) in bf16 on the card. `--tiny`: the tiny
CustomVoice checkpoint in fp32 on the CPU, with a short ladder, so the script cannot rot.

For each model:
1. parity: one greedy request through the batched engine and the reference backend (stock
   qwen-tts); how many leading frames are equal, and the largest difference of the first
   step's talker logits (the tolerance the check used is printed beside it);
2. the engine ladder: N concurrent streaming requests with forced lengths (`min_frames`), for
   each `engine.compile` mode: aggregate audio-s/s, time to first audio p50/p95, RTF per
   stream, mean step time per batch bucket, compile/capture time, peak memory.

Results go to `<out>/results.json` and `<out>/results.md` (the folder is printed). The open-loop
HTTP run over the single-GPU graph is `benchmarks/engine.py --http` (not repeated here).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from collections import defaultdict
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from deployments.engine import (  # noqa: E402
    EngineConfig,
    StreamChunking,
    SynthesisRequest,
    TTSEngine,
)
from deployments.engine.loading import import_qwen_tts  # noqa: E402
from deployments.engine.tiny import default_tiny_models_dir, ensure_tiny_models  # noqa: E402
from deployments.engine.types import StepObserver  # noqa: E402

TEXT = "The quick brown fox jumps over the lazy dog."
SPEAKERS = ["vivian", "ryan", "serena", "aiden", "eric", "dylan", "sohee", "ono_anna", "uncle_fu"]
LOGIT_TOLERANCE = {"float32": 1e-3, "bfloat16": 5e-2, "float16": 5e-2}


class _StepTimes(StepObserver):
    def __init__(self) -> None:
        self.by_batch: dict[int, list[float]] = defaultdict(list)

    def on_step(self, batch_size: int, step_seconds: float) -> None:
        self.by_batch[batch_size].append(step_seconds)


def _peak_memory(device: str) -> float:
    """Peak device memory in GiB (CUDA), else the process's peak RSS."""
    if device.startswith("cuda"):
        return torch.cuda.max_memory_allocated() / 2**30
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def parity(tts, name: str, device: str, dtype: torch.dtype, frames: int) -> dict:
    """Greedy: the batched engine's frames and first-step logits against stock qwen-tts."""
    base = {"model": name, "warmup": False, "device": device, "do_sample": False,
            "dtype": str(dtype).removeprefix("torch."), "max_slots": 2,
            "max_context_tokens": 256}
    req = SynthesisRequest(text=TEXT, speaker="ryan", max_new_tokens=frames + 1, min_frames=frames)
    bat = TTSEngine(tts, EngineConfig(backend="batched", **base), device=device, dtype=dtype)
    ref = TTSEngine(tts, EngineConfig(backend="reference", **base), device=device, dtype=dtype)
    try:
        logits: dict[str, torch.Tensor] = {}

        def first_logits(key):
            def hook(_m, _a, out):
                logits.setdefault(key, out[:, -1, :].detach().float().cpu().clone())
            return hook

        head = tts.model.talker.codec_head
        h = head.register_forward_hook(first_logits("batched"))
        try:
            got = bat.synthesize([req])[0]
        finally:
            h.remove()
        ref_frames: list[torch.Tensor] = []

        def grab(_m, _a, out):
            if out.hidden_states[1] is not None:
                ref_frames.append(out.hidden_states[1][0].cpu())

        h1 = tts.model.talker.register_forward_hook(grab)
        h2 = head.register_forward_hook(first_logits("reference"))
        try:
            want = ref.synthesize([req])[0]
        finally:
            h1.remove()
            h2.remove()
        a, b = got.extra["codes"], torch.stack(ref_frames).numpy()[:want.frames]
        equal = 0
        for x, y in zip(a, b, strict=False):
            if not np.array_equal(x, y):
                break
            equal += 1
        diff = float((logits["batched"] - logits["reference"]).abs().max())
        tol = LOGIT_TOLERANCE[base["dtype"]]
        return {"frames": int(min(len(a), len(b))), "equal_leading_frames": equal,
                "first_logits_max_abs_diff": diff, "tolerance": tol,
                "ok": equal >= 1 and diff <= tol}
    finally:
        bat.close()


def ladder(tts, name: str, device: str, dtype: torch.dtype, mode: str, concurrency: list[int],
           frames: int, compile_backend: str) -> list[dict]:
    slots = max(concurrency)
    cfg = EngineConfig(model=name, backend="batched", device=device, warmup=False,
                       dtype=str(dtype).removeprefix("torch."), max_slots=slots,
                       max_waiting=slots, max_new_tokens=frames + 8, compile=mode,
                       batch_buckets=tuple(concurrency), max_context_tokens=512)
    engine = TTSEngine(tts, cfg, device=device, dtype=dtype)
    engine.loop.runner.compile_backend = compile_backend
    chunking = StreamChunking(first_chunk_frames=1, chunk_frames=6)
    rows = []
    try:
        for n in concurrency:
            t0 = time.perf_counter()
            _streams(engine, n, frames, chunking)  # warm: compiles/captures this shape
            warm = time.perf_counter() - t0
            times = _StepTimes()
            engine.set_observer(times)
            if device.startswith("cuda"):
                torch.cuda.reset_peak_memory_stats()
            r = _streams(engine, n, frames, chunking)
            engine.set_observer(StepObserver())
            steps = {b: 1000 * float(np.mean(v)) for b, v in sorted(times.by_batch.items())}
            rows.append({"model": name, "compile": mode, "streams": n, **r,
                         "step_ms_by_batch": steps, "warm_seconds": warm,
                         "compile_seconds": dict(engine.loop.runner.compile_seconds),
                         "peak_memory_gib": _peak_memory(device)})
            print(f"  {name} compile={mode:<10} {n:>4} streams: {r['audio_s_per_s']:8.1f} "
                  f"audio-s/s, TTFA p50 {r['ttfa_p50'] * 1000:6.0f} ms p95 "
                  f"{r['ttfa_p95'] * 1000:6.0f} ms, RTF {r['rtf_p50']:.3f}", flush=True)
    finally:
        engine.close()
    return rows


def _streams(engine: TTSEngine, n: int, frames: int, chunking: StreamChunking) -> dict:
    reqs = [SynthesisRequest(text=TEXT, speaker=SPEAKERS[i % len(SPEAKERS)], seed=i,
                             max_new_tokens=frames + 1, min_frames=frames) for i in range(n)]
    ttfa, spans, audio = [0.0] * n, [0.0] * n, [0.0] * n
    barrier = threading.Barrier(n + 1)

    def one(i: int) -> None:
        barrier.wait()
        t0 = time.perf_counter()
        first, total = None, 0
        for chunk in engine.stream(reqs[i], chunking):
            if first is None and chunk.audio.size:
                first = time.perf_counter() - t0
            total += chunk.audio.size
        spans[i] = time.perf_counter() - t0
        ttfa[i] = first if first is not None else spans[i]
        audio[i] = total / engine.info.sample_rate

    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    t0 = time.perf_counter()
    barrier.wait()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    rtf = [s / a for s, a in zip(spans, audio, strict=True) if a > 0]
    return {"audio_s_per_s": sum(audio) / wall, "ttfa_p50": float(np.percentile(ttfa, 50)),
            "ttfa_p95": float(np.percentile(ttfa, 95)), "rtf_p50": float(np.median(rtf)),
            "wall_seconds": wall}


def markdown(report: dict) -> str:
    lines = [f"# GPU suite: {report['device_name']}", "",
             f"{report['when']}, torch {report['torch']}, mode {report['mode']}", "",
             "## Parity (greedy, batched vs reference)", "",
             "| model | frames | equal leading frames | first logits max abs diff | tolerance | ok |",
             "|---|---|---|---|---|---|"]
    for name, p in report["parity"].items():
        lines.append(f"| {name} | {p['frames']} | {p['equal_leading_frames']} | "
                     f"{p['first_logits_max_abs_diff']:.2e} | {p['tolerance']:.0e} | {p['ok']} |")
    lines += ["", "## Engine ladder (forced lengths, streaming)", "",
              "| model | compile | streams | audio-s/s | TTFA p50 ms | TTFA p95 ms | RTF | "
              "step ms by batch | compile/capture s | peak GiB |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    for r in report["ladder"]:
        steps = ", ".join(f"{b}: {ms:.1f}" for b, ms in r["step_ms_by_batch"].items())
        lines.append(f"| {r['model']} | {r['compile']} | {r['streams']} | {r['audio_s_per_s']:.1f} | "
                     f"{r['ttfa_p50'] * 1000:.0f} | {r['ttfa_p95'] * 1000:.0f} | "
                     f"{r['rtf_p50']:.3f} | {steps} | {sum(r['compile_seconds'].values()):.1f} | "
                     f"{r['peak_memory_gib']:.2f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> Path:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = ap.add_mutually_exclusive_group(required=True)
    mode.add_argument("--gpu", action="store_true", help="real shapes, bf16, on CUDA")
    mode.add_argument("--tiny", action="store_true", help="tiny models on the CPU (CI)")
    ap.add_argument("--out", help="results folder (default benchmarks/results/gpu-suite-<time>)")
    ap.add_argument("--concurrency", type=int, nargs="+")
    ap.add_argument("--frames", type=int)
    ap.add_argument("--compile", nargs="+", help="engine.compile modes to compare")
    ap.add_argument("--models", nargs="+", default=["Qwen3-TTS-12Hz-0.6B-CustomVoice",
                                                    "Qwen3-TTS-12Hz-1.7B-CustomVoice"])
    args = ap.parse_args(argv)
    import_qwen_tts()
    root = default_tiny_models_dir()
    ensure_tiny_models(root)
    if args.gpu:
        if not torch.cuda.is_available():
            raise SystemExit("--gpu needs a CUDA device")
        device, dtype = "cuda", torch.bfloat16
        concurrency = args.concurrency or [1, 8, 32, 64, 128]
        frames = args.frames or 50
        modes = args.compile or ["none", "cudagraphs"]
        compile_backend = "inductor"
        device_name = torch.cuda.get_device_name(0)
    else:
        device, dtype = "cpu", torch.float32
        concurrency = args.concurrency or [1, 4]
        frames = args.frames or 6
        modes = args.compile or ["none", "compile"]
        compile_backend = "eager"  # the captured graph without inductor's C++ build
        device_name = f"CPU ({os.cpu_count()} cores), tiny models"
    out = Path(args.out or REPO / "benchmarks" / "results" /
               f"gpu-suite-{time.strftime('%Y%m%d-%H%M%S')}")
    out.mkdir(parents=True, exist_ok=True)
    report = {"device_name": device_name, "mode": "gpu" if args.gpu else "tiny",
              "when": time.strftime("%Y-%m-%d %H:%M:%S"), "torch": torch.__version__,
              "frames": frames, "parity": {}, "ladder": []}
    models = args.models if args.gpu else ["tiny-custom_voice"]
    for name in models:
        t0 = time.perf_counter()
        if args.gpu:
            from deployments.engine.real_shape import build_real_shape

            tts = build_real_shape(name, root, dtype=dtype, device=device)
        else:
            tts = TTSEngine.load(EngineConfig(model=str(root / "custom_voice"), warmup=False,
                                              backend="reference", device="cpu",
                                              dtype="float32")).model
        print(f"{name}: built in {time.perf_counter() - t0:.1f} s", flush=True)
        report["parity"][name] = p = parity(tts, name, device, dtype, min(frames, 8))
        print(f"  parity: {p['equal_leading_frames']}/{p['frames']} leading frames equal, first "
              f"logits max abs diff {p['first_logits_max_abs_diff']:.2e} (tolerance "
              f"{p['tolerance']:.0e})", flush=True)
        for m in modes:
            report["ladder"] += ladder(tts, name, device, dtype, m, concurrency, frames,
                                       compile_backend)
        del tts
        if device == "cuda":
            torch.cuda.empty_cache()
    (out / "results.json").write_text(json.dumps(report, indent=2))
    (out / "results.md").write_text(markdown(report))
    print(f"results in {out}")
    return out


if __name__ == "__main__":
    main()
