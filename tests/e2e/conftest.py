"""One `qtts demo`, started as the README says, by a new user: a fresh temporary HOME (so no
tiny checkpoints built yet, no ~/.ray), a fresh data directory, a free port.

The demo runs in its own session (process group), so the tests can stop it the way Ctrl+C in
its terminal does: SIGINT to the whole group.
"""

from __future__ import annotations

import collections
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.e2e.examples import REPO, examples

READY_BOUND_S = 900  # a fresh HOME builds the checkpoints first; a busy 2-core box is slow
BANNER = "qtts demo is serving on"
KEY_LINE = re.compile(r"An API key of tenant 'demo' \(shown once\): (qtts_\S+)")
RAY_LINE = re.compile(r"(RAY_ADDRESS=\S+(?: RAY_\w+=\S+)*)")
#: what a new user's shell does not have: this suite's and Ray's own settings
_FOREIGN = ("RAY_", "QTTS_", "REDIS_", "DATABASE_URL", "ADMIN_TOKEN", "API_KEY_PEPPER",
            "VOICE_ENCRYPTION_KEYS", "AUTH_ENABLED", "BLOB_STORE_URL", "PYTEST_")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def new_user_environment(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(_FOREIGN)}
    env["HOME"] = str(home)
    env.pop("XDG_CACHE_HOME", None)
    return env


def demo_command(port: int) -> list[str]:
    """The README's start command (its `<!-- e2e: demo -->` block), on a free port."""
    block = next(e for e in examples(REPO / "README.md") if "demo" in e.options)
    line = next(ln for ln in block.code.splitlines() if "qtts demo" in ln)
    command = line.split("#", 1)[0].split()
    if command[0] == "qtts":  # the README activates the venv first: its script, by path
        command[0] = str(Path(sys.executable).parent / "qtts")
    return [*command, "--port", str(port)]


def descendants(root: int) -> dict[int, str]:
    """pid -> command line of every live process below `root` (Ray's daemons and workers)."""
    children: dict[int, list[int]] = collections.defaultdict(list)
    names: dict[int, str] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if fields[0] == "Z":  # exited, not yet reaped
            continue
        children[int(fields[1])].append(int(entry))
        names[int(entry)] = cmdline.strip()
    found, stack = {}, list(children.get(root, []))
    while stack:
        pid = stack.pop()
        if pid in names:
            found[pid] = names[pid]
            stack.extend(children.get(pid, []))
    return found


@dataclass
class Demo:
    proc: subprocess.Popen
    base_url: str
    key: str
    ray_env: dict[str, str]  # RAY_ADDRESS and RAY_AUTH_MODE, as the banner prints them
    home: Path
    data_dir: Path
    ready_s: float
    lines: list[str] = field(default_factory=list)

    def output(self) -> str:
        return "".join(self.lines)

    def env(self) -> dict[str, str]:
        """A shell of the same user: same HOME, the demo's data directory."""
        env = new_user_environment(self.home)
        env["QTTS_DATA_DIR"] = str(self.data_dir)
        return env

    def replica_pid(self, deployment: str) -> int:
        title = f"ray::ServeReplica:qwen3-tts:{deployment}"
        pids = [pid for pid, cmd in descendants(self.proc.pid).items() if cmd.startswith(title)]
        assert len(pids) == 1, (deployment, descendants(self.proc.pid))
        return pids[0]

    def stop(self, bound_s: float) -> float:
        """Ctrl+C in the demo's terminal (SIGINT to its process group); seconds to exit."""
        started = time.monotonic()
        os.killpg(self.proc.pid, signal.SIGINT)
        try:
            self.proc.wait(timeout=bound_s)
        except subprocess.TimeoutExpired:
            pytest.fail(f"qtts demo still running {bound_s} s after Ctrl+C:\n{self.output()[-3000:]}")
        return time.monotonic() - started


@pytest.fixture(scope="module")  # stopped when its module ends, even if the stop test is deselected
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    home = tmp_path_factory.mktemp("home")
    data_dir = home / "qtts-data"
    env = new_user_environment(home)
    env["QTTS_DATA_DIR"] = str(data_dir)
    port = free_port()
    started = time.monotonic()
    proc = subprocess.Popen(demo_command(port), cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    lines: list[str] = []
    ready = threading.Event()

    def read() -> None:
        for line in proc.stdout:
            lines.append(line)
            if BANNER in line:
                ready.set()
        ready.set()  # exited: let the waiter see it

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + READY_BOUND_S
        while not ready.wait(1):
            if time.monotonic() > deadline:
                pytest.fail(f"no ready banner after {READY_BOUND_S} s:\n{''.join(lines)[-4000:]}")
        assert proc.poll() is None, f"qtts demo exited {proc.returncode}:\n{''.join(lines)}"
        ready_s = time.monotonic() - started
        # the banner is one print: wait for its last line
        deadline = time.monotonic() + 30
        while not any("Press Ctrl+C" in ln for ln in lines) and time.monotonic() < deadline:
            time.sleep(0.1)
        text = "".join(lines)
        key, ray_address = KEY_LINE.search(text), RAY_LINE.search(text)
        assert key and ray_address, text
        print(f"\nqtts demo from a fresh HOME ready in {ready_s:.1f} s (checkpoints built)")
        ray_env = dict(pair.split("=", 1) for pair in ray_address.group(1).split())
        yield Demo(proc, f"http://127.0.0.1:{port}", key.group(1), ray_env,
                   home, data_dir, ready_s, lines)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGINT)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=30)
        reader.join(timeout=10)
