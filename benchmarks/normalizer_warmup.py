"""Benchmark: the first sentence that needs a normalizer grammar, with and without the warm-up
an ingress replica does as it starts (`TextNormalizer.warm`), side by side.

    python benchmarks/normalizer_warmup.py [--runs 3]

Each run is a fresh Python process (the grammars are built once per process): "cold" times
the first English and then the first Chinese sentence with a number, as a replica without the
warm-up served them; "warm" builds the grammars first (what the replica does at start, timed
separately) and then times the same two sentences. Medians over the runs.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EN = "It costs $1,299.99 on 2026-12-04."
ZH = "第3章，共2026元。"

CHILD = """
import json, logging, sys, time
sys.path.insert(0, {root!r})
logging.disable(logging.WARNING)
from serve_app.text.normalize import TextNormalizer
n = TextNormalizer()
out = {{}}
if {warm}:
    out["warm_up"] = sum(n.warm().values())
for name, text, language in (("en", {en!r}, "english"), ("zh", {zh!r}, "chinese")):
    started = time.perf_counter()
    n.normalize(text, language)
    out[name] = time.perf_counter() - started
print(json.dumps(out))
"""


def run(warm: bool) -> dict[str, float]:
    code = CHILD.format(root=str(ROOT), warm=warm, en=EN, zh=ZH)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    runs = parser.parse_args().runs
    cold = [run(False) for _ in range(runs)]
    warm = [run(True) for _ in range(runs)]

    def median(results: list[dict[str, float]], key: str) -> str:
        values = [r[key] for r in results if key in r]
        return f"{statistics.median(values) * 1000:8.1f}" if values else "       -"

    print(f"normalizer warm-up, {runs} fresh processes each, {platform.processor() or 'cpu'}, "
          f"Python {platform.python_version()}")
    print(f"{'':10}{'warm-up ms':>12}{'1st en ms':>12}{'1st zh ms':>12}")
    for name, results in (("cold", cold), ("warm", warm)):
        print(f"{name:10}{median(results, 'warm_up'):>12}{median(results, 'en'):>12}"
              f"{median(results, 'zh'):>12}")


if __name__ == "__main__":
    main()
