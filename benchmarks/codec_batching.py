"""The codec thread's time for one step's chunks: one decode call per context length (the
output stage's grouping before issue 18's padded decode) vs one left-padded call for all
(prints, asserts nothing).

N streams, each with a chunk of T new frames due and a transformer context of its own length,
spread evenly over 0..71 frames (streams admitted at different times: a stream's context
grows to the 72-frame attention window minus one over its first ~6 s). Both ways run
`StatefulCodecDecoder.step`, interleaved rep by rep so machine noise hits both alike; the
state each call starts from is rebuilt outside the timed part. Median and p90 per step.

    .venv/bin/python benchmarks/codec_batching.py                 # N 1 4 8 16, T 1 and 6
    .venv/bin/python benchmarks/codec_batching.py --streams 16 32 --chunks 1 --reps 50
    .venv/bin/python benchmarks/codec_batching.py --model DIR --device cuda --dtype bfloat16
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from deployments.engine import EngineConfig, ModelKind, TTSEngine  # noqa: E402
from deployments.engine.codec import CodecState, StatefulCodecDecoder  # noqa: E402
from deployments.engine.tiny import ensure_tiny_models  # noqa: E402


def _states(decoder: StatefulCodecDecoder, contexts: list[int],
            gen: torch.Generator) -> list[CodecState]:
    """Fresh states with contexts of the given lengths (values random: timing only)."""
    states = []
    for n in contexts:
        s = decoder.new_state()
        s.context = torch.randn(1, n, s.context.shape[2], generator=gen).to(s.context)
        states.append(s)
    return states


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def per_context(decoder: StatefulCodecDecoder, codes: torch.Tensor,
                states: list[CodecState]) -> None:
    """The old grouping: one `step` per context length."""
    decoder.step_by_context(codes, states).cpu()


def padded(decoder: StatefulCodecDecoder, codes: torch.Tensor,
           states: list[CodecState]) -> None:
    """One left-padded `step` for all."""
    decoder.step(codes, states).cpu()


def measure(decoder: StatefulCodecDecoder, n: int, frames: int, reps: int,
            device: torch.device) -> dict[str, list[float]]:
    gen = torch.Generator().manual_seed(n * 100 + frames)
    contexts = [round(x) for x in np.linspace(0, decoder._window, n)]
    codes = torch.randint(0, 64, (n, 16, frames), generator=gen).to(device)
    times: dict[str, list[float]] = {"per-context": [], "padded": []}
    ways = [("per-context", per_context), ("padded", padded)]
    for rep in range(reps + 3):  # 3 warm-up reps (kernels built per shape)
        for name, way in ways if rep % 2 else ways[::-1]:
            states = _states(decoder, contexts, gen)
            _sync(device)
            t0 = time.perf_counter()
            way(decoder, codes, states)
            _sync(device)
            if rep >= 3:
                times[name].append(time.perf_counter() - t0)
    return times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", help="checkpoint dir (default: the tiny CustomVoice)")
    ap.add_argument("--streams", type=int, nargs="+", default=[1, 4, 8, 16])
    ap.add_argument("--chunks", type=int, nargs="+", default=[1, 6], help="frames per chunk")
    ap.add_argument("--reps", type=int, default=30)
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="float32")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model = args.model
    if model is None:
        model = str(ensure_tiny_models()[ModelKind.CUSTOM_VOICE])
    engine = TTSEngine.load(EngineConfig(backend="reference", model=model, device=args.device,
                                         dtype=args.dtype, warmup=False))
    device = torch.device(engine.info.device)
    decoder = StatefulCodecDecoder(engine.model.model.speech_tokenizer.model.decoder)
    print(f"model {model} ({engine.info.device}/{engine.info.dtype}), torch threads "
          f"{args.threads}, {args.reps} reps, load average {os.getloadavg()[0]:.1f}; contexts "
          f"spread evenly over 0..{decoder._window} frames; ms per step (median / p90)")
    print(f"{'streams':>7} | {'chunk':>5} | {'calls':>5} | {'per-context ms':>15} | "
          f"{'padded ms':>15} | {'per-context / padded':>20}")
    with torch.inference_mode():
        for frames in args.chunks:
            for n in args.streams:
                t = measure(decoder, n, frames, args.reps, device)
                old, new = (np.array(t[k]) * 1e3 for k in ("per-context", "padded"))
                calls = len({round(x) for x in np.linspace(0, decoder._window, n)})
                print(f"{n:>7} | {frames:>5} | {calls:>5} | "
                      f"{np.median(old):>6.1f} / {np.percentile(old, 90):>6.1f} | "
                      f"{np.median(new):>6.1f} / {np.percentile(new, 90):>6.1f} | "
                      f"x{np.median(old) / np.median(new):>19.2f}", flush=True)
    print(f"load average at the end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
