"""benchmarks/gpu_suite.py cannot rot: its `--tiny` mode (tiny models on the CPU, the same
code path as `--gpu`) runs in CI and writes its JSON and Markdown tables."""

from __future__ import annotations

import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_gpu_suite_tiny_mode_writes_its_tables(tmp_path):
    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        import gpu_suite
    finally:
        sys.path.remove(str(REPO / "benchmarks"))
    out = gpu_suite.main(["--tiny", "--out", str(tmp_path), "--concurrency", "1", "2",
                          "--frames", "4"])
    report = json.loads((out / "results.json").read_text())
    parity = report["parity"]["tiny-custom_voice"]
    assert parity["ok"] and parity["equal_leading_frames"] == parity["frames"]
    rows = report["ladder"]
    assert {(r["compile"], r["streams"]) for r in rows} == {
        ("none", 1), ("none", 2), ("compile", 1), ("compile", 2)}
    assert all(r["audio_s_per_s"] > 0 and r["ttfa_p95"] > 0 for r in rows)
    assert "| tiny-custom_voice | compile | 2 |" in (out / "results.md").read_text()
