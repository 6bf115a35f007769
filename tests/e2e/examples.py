"""The documents' code examples, taken from the Markdown so that tests and docs cannot drift.

Convention (README.md and docs/*.md): an HTML comment right before a fenced block marks it
for the e2e tier, which runs it against a real `qtts demo`:

    <!-- e2e -->            run the block as written (bash or python)
    <!-- e2e: isolated -->  run it with a fresh QTTS_DATA_DIR of its own (admin commands
                            that must not touch the running demo's tenants and keys)
    <!-- e2e: demo -->      the block that starts the demo: its `qtts demo` line is the
                            command the tier starts (plus `--port`)

Unmarked blocks (diagrams, GPU and Kubernetes commands, fragments) are not run. What a runner
may change, and nothing else: the base URL (`http://127.0.0.1:8000` -> the demo's port) and
the placeholders a reader fills in by hand, each with the value an earlier step printed:
`qtts_...` (an API key), `key_...` (a key id), `voice_...` (a voice id), `pdict_...` (a
pronunciation dictionary id). Files an example
assumes exist (ref.wav, chapter1.txt) are created in its working directory by the test.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
MARKER = re.compile(r"^<!--\s*e2e(?::\s*(?P<opts>[a-z -]+?))?\s*-->\s*$")
FENCE = re.compile(r"^```(?P<lang>[a-z]*)\s*$")
DOC_URL = "http://127.0.0.1:8000"
PLACEHOLDERS = {  # placeholder -> the pattern of the value that replaces it
    "qtts_...": re.compile(r"\bqtts_[A-Za-z0-9_-]{20,}"),
    "key_...": re.compile(r"\bkey_[A-Za-z0-9]{6,}"),
    "voice_...": re.compile(r"\bvoice_[A-Za-z0-9]{6,}"),
    "pdict_...": re.compile(r"\bpdict_[A-Za-z0-9]{6,}"),
}


@dataclass(frozen=True)
class Example:
    path: Path
    line: int  # of the opening fence, 1-based
    lang: str
    code: str
    options: frozenset[str]

    @property
    def name(self) -> str:
        return f"{self.path.relative_to(REPO)}:{self.line}"


def examples(path: Path) -> list[Example]:
    """The marked fenced blocks of one Markdown file, in order."""
    found: list[Example] = []
    lines = path.read_text().splitlines()
    i = 0
    while i < len(lines):
        marker = MARKER.match(lines[i].strip())
        if marker:
            j = i + 1
            fence = FENCE.match(lines[j].strip()) if j < len(lines) else None
            if fence is None:
                raise ValueError(f"{path}:{i + 1}: an e2e marker must sit right above a fence")
            end = next(k for k in range(j + 1, len(lines)) if lines[k].strip() == "```")
            opts = frozenset((marker.group("opts") or "").split())
            found.append(Example(path, j + 1, fence.group("lang"),
                                 "\n".join(lines[j + 1:end]) + "\n", opts))
            i = end
        i += 1
    return found


def documents() -> list[Path]:
    return [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]


@dataclass
class Session:
    """What a reader carries from one example to the next in a document: the demo's address,
    the last key / key id / voice id printed, the shell's exported variables."""

    base_url: str
    cwd: Path
    env: dict[str, str]
    values: dict[str, str] = field(default_factory=dict)  # placeholder -> value
    outputs: list[str] = field(default_factory=list)  # stdout of every command, in order

    def fill(self, code: str) -> str:
        code = code.replace(DOC_URL, self.base_url)
        for placeholder in PLACEHOLDERS:
            if placeholder in code:
                if placeholder not in self.values:
                    raise AssertionError(f"no value printed yet for {placeholder!r} in:\n{code}")
                code = code.replace(placeholder, self.values[placeholder])
        return code

    def learn(self, output: str) -> None:
        self.outputs.append(output)
        for placeholder, pattern in PLACEHOLDERS.items():
            found = pattern.findall(output)
            if found:
                self.values[placeholder] = found[-1]


def shell_commands(code: str) -> list[str]:
    """A bash block as logical commands (backslash continuations joined; comment-only and
    blank lines dropped)."""
    commands, current = [], ""
    for raw in code.splitlines():
        if not current and (not raw.strip() or raw.lstrip().startswith("#")):
            continue
        if raw.rstrip().endswith("\\"):
            current += raw.rstrip()[:-1] + " "
            continue
        commands.append(current + raw)
        current = ""
    if current:
        commands.append(current)
    return commands


def run_bash(example: Example, session: Session, timeout_s: float = 300) -> list[tuple[str, str]]:
    """Run a bash example command by command (so that a placeholder takes the value an earlier
    command printed); `export NAME=value` carries to the next commands. Returns (command,
    stdout) pairs; a command that exits non-zero fails the example."""
    results = []
    for command in shell_commands(example.code):
        command = session.fill(command)
        words = shlex.split(command, comments=True)
        if words and words[0] == "export" and len(words) == 2 and "=" in words[1]:
            name, value = words[1].split("=", 1)
            session.env[name] = value
            results.append((command, ""))
            continue
        done = subprocess.run(["bash", "-o", "pipefail", "-c", command], cwd=session.cwd,
                              env=session.env, capture_output=True, text=True, timeout=timeout_s)
        assert done.returncode == 0, (
            f"{example.name}: `{command}` exited {done.returncode}\n"
            f"stdout: {done.stdout[-2000:]}\nstderr: {done.stderr[-4000:]}")
        session.learn(done.stdout)
        results.append((command, done.stdout))
    return results


def run_python(example: Example, session: Session, timeout_s: float = 300) -> str:
    code = session.fill(example.code)
    script = session.cwd / f"example_{example.path.stem}_{example.line}.py"
    script.write_text(code)
    done = subprocess.run([sys.executable, str(script)], cwd=session.cwd, env=session.env,
                          capture_output=True, text=True, timeout=timeout_s)
    assert done.returncode == 0, (
        f"{example.name} exited {done.returncode}\nstdout: {done.stdout[-2000:]}\n"
        f"stderr: {done.stderr[-4000:]}")
    session.learn(done.stdout)
    return done.stdout


def json_documents(text: str) -> list[object]:
    """Every JSON object printed in `text` (curl prints bodies back to back, no newline)."""
    decoder, found, i = json.JSONDecoder(), [], 0
    while (i := text.find("{", i)) != -1:
        try:
            value, end = decoder.raw_decode(text, i)
        except ValueError:
            i += 1
            continue
        found.append(value)
        i = end
    return found


def assert_no_error_bodies(example: Example, outputs: list[str]) -> None:
    """curl -s exits 0 on a 4xx: an example has failed if any body it printed is an error."""
    for output in outputs:
        for body in json_documents(output):
            if isinstance(body, dict):
                assert "error" not in body and body.get("success", True) is not False, \
                    f"{example.name} printed an error: {body}"


def python_env(base: dict[str, str]) -> dict[str, str]:
    """The venv's bin first on PATH: the docs call `qtts` and `python` as an activated venv."""
    env = dict(base)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env
