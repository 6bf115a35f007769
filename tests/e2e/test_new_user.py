"""What a new user does, end to end (issue 8): `qtts demo` from a fresh HOME (the tiny
checkpoints get built), the README's and the docs' examples exactly as written (taken from
the Markdown: see tests/e2e/examples.py for the marker convention), a model replica killed
mid-stream, then Ctrl+C.

One demo serves the whole module (tests/e2e/conftest.py); the tests run in file order and the
last one stops it.
"""

from __future__ import annotations

import base64
import io
import itertools
import json
import re
import time
from pathlib import Path

import httpx
import pytest
import soundfile as sf

from tests.e2e.conftest import Demo, descendants
from tests.e2e.examples import (
    REPO,
    Example,
    Session,
    assert_no_error_bodies,
    documents,
    examples,
    json_documents,
    python_env,
    run_bash,
    run_python,
)
from tests.samples import wav_bytes

pytestmark = pytest.mark.timeout(1500)  # the first test waits for a fresh demo to come up

_SEEDS = itertools.count(int(time.time()) % 100_000 * 1000)
#: Issue 8's target: serving again within 30 s of a replica's death (measured 10-30 s on the
#: 2-core box, 33 s at load ~20). The test prints the figure and fails only past a bound that
#: no busy machine excuses: a shared machine's timing is not a test outcome.
RECOVERY_TARGET_S = 30
RECOVERY_BOUND_S = 120
STOP_BOUND_S = 60  # target 10 s on an idle 2-core box; generous for a busy one
CHAPTER = ("Chapter one. The rain had stopped by noon. "
           "She walked to the station and waited for the last train home.\n")

RUNNABLE = [e for doc in documents() for e in examples(doc) if "demo" not in e.options]
_sessions: dict[tuple[Path, bool], Session] = {}


def _session(example: Example, demo: Demo, tmp_path_factory) -> Session:
    """One reader per document (state flows from block to block); isolated blocks get a
    fresh data directory of their own."""
    isolated = "isolated" in example.options
    key = (example.path, isolated)
    if key not in _sessions:
        cwd = tmp_path_factory.mktemp(f"reader-{example.path.stem}")
        (cwd / "ref.wav").write_bytes(wav_bytes(4.0, rate=24000))
        (cwd / "chapter1.txt").write_text(CHAPTER)
        env = python_env(demo.env())
        env.update(demo.ray_env)  # what the banner tells handle-API users
        if isolated:
            env["QTTS_DATA_DIR"] = str(cwd / "qtts-data")
        session = Session(base_url=demo.base_url, cwd=cwd, env=env)
        session.values["qtts_..."] = demo.key  # "the demo prints one"
        _sessions[key] = session
    return _sessions[key]


def _written_files(code: str) -> list[str]:
    names = re.findall(r"""write_to_file\(["']([^"']+)["']\)|open\(["']([^"']+)["'],\s*["']wb["']\)"""
                       r"""|\s-o\s+(\S+)""", code)
    return [next(n for n in group if n) for group in names]


def _check_audio_file(path: Path) -> None:
    assert path.is_file() and path.stat().st_size > 0, path
    head = path.read_bytes()[:4]
    if path.suffix == ".mp3":
        assert head[:3] == b"ID3" or (head[0] == 0xFF and head[1] & 0xE0 == 0xE0), (path, head)
    elif path.suffix == ".wav":
        assert head == b"RIFF", (path, head)


def _check_seed_synthesis(outputs: list[str]) -> None:
    """README: `{success, audio_base64, ...}` with a 24 kHz WAV whose length equals duration."""
    bodies = [b for out in outputs for b in json_documents(out)
              if isinstance(b, dict) and "audio_base64" in b]
    assert bodies, outputs
    for body in bodies:
        assert body["success"] is True and body["sample_rate"] == 24000, body
        audio, rate = sf.read(io.BytesIO(base64.b64decode(body["audio_base64"])))
        assert rate == 24000 and abs(len(audio) / rate - body["duration"]) < 0.01, body


@pytest.mark.parametrize("example", RUNNABLE, ids=lambda e: e.name)
def test_documented_example_runs_as_written(example: Example, demo: Demo, tmp_path_factory):
    session = _session(example, demo, tmp_path_factory)
    if example.lang == "bash":
        outputs = [out for _, out in run_bash(example, session)]
    elif example.lang == "python":
        outputs = [run_python(example, session)]
    else:
        pytest.fail(f"{example.name}: no runner for ```{example.lang}")
    assert_no_error_bodies(example, outputs)
    for name in _written_files(example.code):
        _check_audio_file(session.cwd / name)
    if "/api/tts/synthesize" in example.code:
        _check_seed_synthesis(outputs)


def test_the_readme_examples_are_marked_and_cover_the_quick_start():
    """The markers themselves: the quick start's blocks must stay runnable (a block that loses
    its marker would silently drop out of this tier)."""
    readme = examples(REPO / "README.md")
    assert sum("demo" in e.options for e in readme) == 1
    code = "".join(e.code for e in readme)
    for needle in ("/api/tts/synthesize", "OpenAI(base_url=", "qtts admin create-key",
                   "/v1/voices", "/v1/jobs"):
        assert needle in code, needle


# ----------------------------------------------------------------------------- faults
def _wait_until_serving(demo: Demo, since: float, stream: bool = False) -> float:
    """Seconds from `since` until a synthesis succeeds again (at most RECOVERY_BOUND_S)."""
    last = ""
    with httpx.Client(base_url=demo.base_url, timeout=30,
                      headers={"Authorization": f"Bearer {demo.key}"}) as client:
        while time.monotonic() - since < RECOVERY_BOUND_S:
            body = {"model": "tts-1", "input": "Back again.", "voice": "alloy",
                    "response_format": "wav", "seed": next(_SEEDS),  # never a cache hit
                    **({"stream_format": "audio"} if stream else {})}
            try:
                response = client.post("/v1/audio/speech", json=body)
                if response.status_code == 200 and response.content[:4] == b"RIFF" and \
                        response.headers.get("X-Cache") != "hit":
                    return time.monotonic() - since
                last = f"{response.status_code} {response.text[:200]}"
            except httpx.HTTPError as exc:
                last = repr(exc)
            time.sleep(0.5)
    pytest.fail(f"not serving {RECOVERY_BOUND_S} s after the replica was killed: {last}")


def _kill(pid: int) -> float:
    import os
    import signal

    os.kill(pid, signal.SIGKILL)
    return time.monotonic()


LONG = {"model": "tts-1", "voice": "alloy", "input": "A long story, told slowly. " * 8,
        "min_frames": 400, "max_new_tokens": 600}  # a stream of ~30 s of audio


def test_a_model_replica_killed_mid_stream_aborts_raw_audio_ends_sse_with_an_error_and_recovers(
        demo: Demo):
    """docs/streaming.md: after a failure mid-stream, chunked audio closes the connection
    without the terminating chunk (the client sees an incomplete transfer, not a short but
    valid file) and SSE sends an error event and ends; the service serves again (target 30 s).
    Both streams run on the one CustomVoice replica when it is killed (one recovery to wait)."""
    _wait_until_serving(demo, time.monotonic(), stream=True)
    pid = demo.replica_pid("CustomVoice")
    headers = {"Authorization": f"Bearer {demo.key}"}
    with httpx.Client(base_url=demo.base_url, timeout=120, headers=headers) as raw_client, \
            httpx.Client(base_url=demo.base_url, timeout=120, headers=headers) as sse_client:
        with raw_client.stream("POST", "/v1/audio/speech", json={
                **LONG, "response_format": "pcm", "stream_format": "audio"}) as raw, \
                sse_client.stream("POST", "/v1/audio/speech", json={
                    **LONG, "response_format": "pcm", "stream_format": "sse"}) as sse:
            assert raw.status_code == 200, raw.read()
            assert sse.status_code == 200, sse.read()
            chunks = raw.iter_raw()
            received = len(next(chunks))  # the raw stream is under way
            events: list[dict] = []
            lines = sse.iter_lines()
            for line in lines:  # ... and the SSE one
                if line.startswith("data:"):
                    events.append(json.loads(line[5:]))
                    if events[-1].get("type") == "speech.audio.delta":
                        break
            killed = _kill(pid)
            with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
                for chunk in chunks:
                    received += len(chunk)
            for line in lines:
                if line.startswith("data:"):
                    events.append(json.loads(line[5:]))
    assert received > 0
    types = [e.get("type") for e in events]
    assert types[0] == "speech.audio.delta", types[:3]
    assert types[-1] == "error" and "speech.audio.done" not in types, types[-3:]
    assert {"code", "message"} <= set(events[-1]["error"]), events[-1]
    recovered = _wait_until_serving(demo, killed)
    print(f"\nserving again {recovered:.1f} s after CustomVoice was killed mid-stream "
          f"(target {RECOVERY_TARGET_S} s)")
    assert recovered <= RECOVERY_BOUND_S, f"{recovered:.1f} s"


# ------------------------------------------------------------------------------ stop
def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def test_ctrl_c_stops_the_demo_and_every_process_it_started(demo: Demo):
    """Last test of the module: it stops the shared demo."""
    started = descendants(demo.proc.pid)
    assert any("raylet" in cmd for cmd in started.values()), started
    took = demo.stop(STOP_BOUND_S)
    print(f"\nqtts demo stopped {took:.1f} s after Ctrl+C")
    assert demo.proc.returncode == 0, demo.output()[-3000:]
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        alive = {pid: cmd for pid, cmd in started.items() if _alive(pid)}
        if not alive:
            break
        time.sleep(0.5)
    assert not alive, f"left running after the demo exited: {alive}"
    assert "Traceback" not in demo.output(), demo.output()[-3000:]
