"""`qtts say` without a server (parser, formats, progress bar) and the playground's files."""

from __future__ import annotations

import io
import re

import pytest

from serve_app.edge.path_table import PUBLIC_PATHS, is_public
from serve_app.routes.playground import ASSETS, STATIC_DIR
from serve_app.tools.cli import build_parser
from serve_app.tools.say_cli import (
    ProgressBar,
    SayError,
    _format_of,
    say_command,
    sentence,
    server_url,
)


def test_say_is_a_subcommand_with_the_issue_flags():
    args = build_parser().parse_args(["say", "Hi", "--voice", "Vivian", "--model", "tts-1",
                                      "--instructions", "Softly.", "-o", "out.wav", "--stream"])
    assert (args.text, args.voice, args.model, args.instructions, args.output, args.stream) == (
        "Hi", "Vivian", "tts-1", "Softly.", "out.wav", True)
    assert args.func.__name__ == "say_command"


def test_output_extension_picks_the_format():
    assert [_format_of(n) for n in ("a.mp3", "a.WAV", "a.ogg", "a.raw", "a", "-", None)] == [
        "mp3", "wav", "opus", "pcm", None, None, None]


def test_an_extension_that_names_no_format_is_a_usage_error_not_a_silent_mp3(capsys, tmp_path):
    with pytest.raises(SayError, match=r"Cannot tell the audio format from x\.xyz") as raised:
        _format_of("x.xyz")
    assert raised.value.status == 2
    args = build_parser().parse_args(["say", "Hi", "-o", str(tmp_path / "x.xyz")])
    assert say_command(args) == 2
    message = capsys.readouterr().err
    assert message.startswith("qtts say: Cannot tell") and "--format" in message
    assert message.rstrip().endswith(".") and not (tmp_path / "x.xyz").exists()


def test_a_v1_suffix_on_the_url_is_the_same_server(monkeypatch):
    monkeypatch.delenv("QTTS_URL", raising=False)
    assert server_url("http://host:8000/v1") == "http://host:8000"
    assert server_url("http://host:8000/v1/") == "http://host:8000"
    assert server_url("http://host:8000/edge") == "http://host:8000/edge"
    assert server_url(None) == "http://127.0.0.1:8000"


def test_messages_are_sentences():
    assert sentence("an API key is required") == "An API key is required."
    assert sentence("Unknown voice 'x'; allowed: a, b.") == "Unknown voice 'x'; allowed: a, b."


class _File(io.StringIO):
    def isatty(self) -> bool:
        return False


def test_progress_bar_in_a_log_prints_each_tenth_once_up_to_100():
    out = _File()
    bar = ProgressBar(out, width=10)
    for fraction in (0.0, 0.05, 0.34, 0.35, 0.67, 1.0):
        bar.show(fraction, "running")
    lines = out.getvalue().splitlines()
    assert [re.search(r"(\d+\.\d)%", ln).group(1) for ln in lines] == ["0.0", "34.0", "67.0",
                                                                       "100.0"]
    assert lines[-1].startswith("[##########] 100.0%")


def test_every_playground_file_is_served_and_public():
    on_disk = {p.name for p in STATIC_DIR.iterdir()}
    assert on_disk == {"index.html", *ASSETS}
    assert is_public("/playground")
    assert all(f"/playground/{name}" in PUBLIC_PATHS for name in ASSETS)


def test_playground_uses_no_third_party_resources():
    for name in ("index.html", *ASSETS):
        text = (STATIC_DIR / name).read_text()
        assert not re.search(r"""(src|href)=["']?(https?:)?//""", text), name
        assert "import(" not in text and "@import" not in text, name
