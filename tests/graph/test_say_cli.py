"""`qtts say` as a user runs it (a subprocess with QTTS_URL / QTTS_KEY) against the graph."""

from __future__ import annotations

import io
import os
import subprocess
import sys

import av
import numpy as np
import pytest

from tests.graph.conftest import REPO_ROOT, free_port

pytestmark = pytest.mark.graph

#: Three segments at the jobs' default segment_chars (300): progress moves in steps.
LONG_TEXT = " ".join(
    f"This is sentence number {i} of a long text that is read aloud as one job." for i in range(12)
)


def say(graph, *args: str, key: str | None = None, url: str | None = None,
        cwd=None) -> subprocess.CompletedProcess:
    env = {**os.environ, "QTTS_URL": url or graph.base_url,
           "QTTS_KEY": graph.api_key if key is None else key}
    return subprocess.run([sys.executable, "-m", "serve_app.tools.cli", "say", *args], cwd=cwd or REPO_ROOT,
                          env=env, capture_output=True, timeout=600)


def seconds_of(data: bytes) -> float:
    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.audio[0]
        return sum(f.samples for f in container.decode(stream)) / stream.rate


def test_say_short_text_to_mp3_file(graph, tmp_path):
    out = tmp_path / "hello.mp3"
    result = say(graph, "Hello from qtts say.", "--voice", "Vivian", "--seed", "3", "-o", str(out))
    assert result.returncode == 0, result.stderr.decode()
    assert seconds_of(out.read_bytes()) > 0
    assert f"Wrote {out}: " in result.stderr.decode()


def test_say_defaults_to_speech_mp3_in_the_working_directory(graph, tmp_path):
    result = say(graph, "Default output.", "--instructions", "Cheerfully.", cwd=tmp_path)
    assert result.returncode == 0, result.stderr.decode()
    assert seconds_of((tmp_path / "speech.mp3").read_bytes()) > 0


def test_say_stream_writes_pcm_to_stdout_and_reports_first_audio(graph):
    result = say(graph, "Streaming to standard output.", "--stream", "--format", "pcm",
                 "-o", "-")
    assert result.returncode == 0, result.stderr.decode()
    samples = np.frombuffer(result.stdout, "<i2")
    assert len(result.stdout) % 2 == 0 and samples.size > 0
    assert "first audio after" in result.stderr.decode()


def test_say_job_shows_progress_to_100_percent(graph, tmp_path):
    out = tmp_path / "long.wav"
    result = say(graph, LONG_TEXT, "--job", "-o", str(out))
    stderr = result.stderr.decode()
    assert result.returncode == 0, stderr
    assert "job " in stderr and "submitted" in stderr
    assert "100.0% succeeded" in stderr  # the bar's last line
    assert out.read_bytes()[:4] == b"RIFF" and seconds_of(out.read_bytes()) > 0


def test_say_prints_the_error_envelope_clearly(graph, tmp_path):
    result = say(graph, "x", "--voice", "nobody", "-o", str(tmp_path / "x.mp3"))
    stderr = result.stderr.decode()
    assert result.returncode == 1
    assert "422 invalid_value (voice): Unknown voice 'nobody'" in stderr
    assert "request " in stderr  # the request id, to quote to whoever runs the server
    assert not (tmp_path / "x.mp3").exists()  # nothing written for a failure


def test_say_without_a_valid_key_says_how_to_pass_one(graph, tmp_path):
    result = say(graph, "x", key="qtts_wrong", cwd=tmp_path)
    stderr = result.stderr.decode()
    assert result.returncode == 1 and stderr.startswith("qtts say: 401 ")
    assert "QTTS_KEY" in stderr
    assert ". Pass --key or set QTTS_KEY" in stderr  # sentences, never run together


def test_say_job_error_envelope_for_a_bad_model(graph, tmp_path):
    result = say(graph, "x", "--job", "--model", "nope", cwd=tmp_path)
    assert result.returncode == 1
    assert "422 invalid_value (model): Unknown model 'nope'" in result.stderr.decode()


def test_say_unreachable_server_is_one_line(graph, tmp_path):
    result = say(graph, "x", url=f"http://127.0.0.1:{free_port()}", cwd=tmp_path)
    stderr = result.stderr.decode().strip()
    assert result.returncode == 1 and "Cannot reach the server at http://127.0.0.1:" in stderr
    assert stderr.rstrip().endswith("Set --url or QTTS_URL.")
    assert len(stderr.splitlines()) == 1  # no traceback


def test_say_accepts_the_openai_base_url_with_v1(graph, tmp_path):
    out = tmp_path / "v1.wav"
    result = say(graph, "Hello.", "-o", str(out), url=f"{graph.base_url}/v1")
    assert result.returncode == 0, result.stderr.decode()
    assert out.read_bytes()[:4] == b"RIFF"  # the format from -o's extension


def test_a_second_demo_on_a_running_graphs_port_is_refused(graph):
    """Serve's proxy listens with SO_REUSEPORT: `qtts demo` must still see the port taken
    (two demos once shared one port, requests alternating between their clusters)."""
    port = graph.base_url.rsplit(":", 1)[1]
    result = subprocess.run([sys.executable, "-m", "serve_app.tools.cli", "demo", "--port", port],
                            cwd=REPO_ROOT, capture_output=True, timeout=120)
    stderr = result.stderr.decode()
    assert result.returncode == 1, stderr
    assert f"qtts demo: Port {port} on 127.0.0.1 is already in use by pid " in stderr
    assert "Ray" not in result.stdout.decode()  # refused before Ray or checkpoints
