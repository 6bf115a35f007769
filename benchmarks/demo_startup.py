"""How long `qtts demo` takes to be ready and to stop (issue 8, item 12).

    .venv/bin/python benchmarks/demo_startup.py [--runs 2] [--fresh-models] [--signal INT]

Each run starts `qtts demo` as a user would (a fresh temporary HOME and data directory, a free
port), times the ready banner from process start, sends SIGINT (Ctrl+C) or SIGTERM, and times
the exit (the signal goes to the demo's process group, as a Ctrl+C in its terminal).
By default the tiny checkpoints come from the usual cache (built once, ~25 s);
`--fresh-models` builds them inside the run, as on a brand-new machine.

Figures on the 2-core dev box (shared: the load average is part of every figure; checkpoints
prebuilt unless said):
- before (6142aba, no .pyc: setup did not compile bytecode and PYTHONDONTWRITEBYTECODE=1
  here): ready 135.5 s (load 0.7 at start), stop 11.6 s (SIGINT to the driver only);
  124 s of CPU summed over the demo's processes at ready (each model replica 21 s, the
  driver 13.6 s, AudioProcessor 11 s, ingress 9.6 s). Issue 8: 128 s / 40-50 s (Ctrl+C).
- after: 52 s of CPU at ready (model replicas 9 s each, driver 5, AudioProcessor 4.8, ingress
  3.1, Serve controller 3.4, proxy 1.9, Ray's daemons ~6). Ready 35.9 s at load 1.9, 61-110 s
  at load 5-22; stop 1.3-2.9 s after Ctrl+C (SIGINT to the process group). From a fresh HOME
  (checkpoints built first), tests/e2e: ready 32.2-47.6 s at moderate load, 103 s at load ~20.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
QTTS = Path(sys.executable).parent / "qtts"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_once(fresh_models: bool, sig: int, keep_log: Path | None) -> tuple[float, float]:
    home = Path(tempfile.mkdtemp(prefix="qtts-bench-home-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "QTTS_"))}
    env.update(HOME=str(home), QTTS_DATA_DIR=str(home / "data"))
    if not fresh_models:
        from deployments.engine.tiny import default_tiny_models_dir, ensure_tiny_models

        models = default_tiny_models_dir()
        ensure_tiny_models(models)
        env["QTTS_TINY_MODELS_DIR"] = str(models)
    port = _free_port()
    started = time.monotonic()
    proc = subprocess.Popen([str(QTTS), "demo", "--port", str(port)], cwd=home, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    lines: list[str] = []
    ready = threading.Event()

    def read() -> None:
        for line in proc.stdout:
            lines.append(f"{time.monotonic() - started:7.2f} {line}")
            if "qtts demo is serving" in line:
                ready.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        if not ready.wait(600):
            raise RuntimeError("not ready in 600 s:\n" + "".join(lines[-40:]))
        ready_s = time.monotonic() - started
        stop_at = time.monotonic()
        os.killpg(proc.pid, sig)  # the whole process group, as Ctrl+C in a terminal does
        proc.wait(timeout=300)
        stop_s = time.monotonic() - stop_at
    finally:
        if proc.poll() is None:
            proc.kill()
        reader.join(timeout=5)
        if keep_log:
            keep_log.write_text("".join(lines))
    return ready_s, stop_s


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--fresh-models", action="store_true")
    parser.add_argument("--signal", default="INT", choices=["INT", "TERM"])
    parser.add_argument("--log", type=Path, help="write the demo's output, timestamped, here")
    args = parser.parse_args()
    sig = signal.SIGINT if args.signal == "INT" else signal.SIGTERM
    load = os.getloadavg()[0]
    for i in range(args.runs):
        ready_s, stop_s = run_once(args.fresh_models, sig, args.log)
        print(f"run {i + 1}: ready {ready_s:.1f} s, stopped {stop_s:.1f} s after SIG{args.signal}"
              f" (load average before: {load:.2f}, {os.cpu_count()} cores)", flush=True)
        load = os.getloadavg()[0]


if __name__ == "__main__":
    main()
