"""`qtts say`: speak a text through a running server (any deployment of this project).

    qtts say "text" [--voice V] [--model M] [--instructions I] [--language L] [-o out.mp3]
                    [--format F] [--stream] [--job] [--url URL] [--key KEY]

The URL and key come from the flags or QTTS_URL / QTTS_KEY (default http://127.0.0.1:8000).
Text longer than one request allows (the server's max_text_chars: the 422 it answers says
so) or `--job` goes to POST /v1/jobs, with a progress bar until it is done. `--stream`
writes the audio as it is generated (`-o -` for stdout). Every error envelope is printed as
one clear line of sentences (status, code, field, message, what to do) and the exit status
is 1; 2 for usage errors. `--url` may end in `/v1` (the base URL the openai SDK takes): the
routes are found below it all the same. The format comes from `--format`, else from `-o`'s
extension (an extension that names no format is an error, never a silent mp3), else mp3.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import IO

import httpx

DEFAULT_URL = "http://127.0.0.1:8000"
#: Text longer than this goes to a job without asking the server first (its default limit).
JOB_THRESHOLD_CHARS = 5000
FORMATS = ("mp3", "wav", "opus", "flac", "aac", "pcm")
_EXTENSION_FORMATS = {"mp3": "mp3", "wav": "wav", "opus": "opus", "ogg": "opus", "flac": "flac",
                      "aac": "aac", "pcm": "pcm", "raw": "pcm"}


class SayError(Exception):
    """A failure to report as one line, then exit 1 (or `status`)."""

    def __init__(self, message: str, status: int = 1):
        super().__init__(message)
        self.status = status


def sentence(text: str) -> str:
    """`text` with a capital first letter and a closing full stop: messages are read, and
    several run together on one line."""
    text = text.strip()
    if not text:
        return text
    text = text[0].upper() + text[1:]
    return text if text[-1] in ".!?" else text + "."


def add_say_parser(sub: argparse._SubParsersAction) -> None:
    say = sub.add_parser("say", help="speak a text through a running server (QTTS_URL, QTTS_KEY)")
    say.add_argument("text", help='the text; "-" reads it from stdin')
    say.add_argument("--voice", default="alloy",
                     help="preset, OpenAI voice name or saved voice id (default alloy)")
    say.add_argument("--model", default="tts-1",
                     help="CustomVoice, VoiceDesign, or tts-1 / tts-1-hd / gpt-4o-mini-tts")
    say.add_argument("--instructions", help="how to speak; with VoiceDesign, the voice description")
    say.add_argument("--language", default="auto")
    say.add_argument("-o", "--output", help="file to write (default speech.<format>; - for stdout)")
    say.add_argument("--format", choices=FORMATS,
                     help="audio format (default: from --output's extension, else mp3)")
    say.add_argument("--seed", type=int)
    say.add_argument("--stream", action="store_true", help="write audio as it is generated")
    say.add_argument("--job", action="store_true", help="send as an async job (long text)")
    say.add_argument("--url", default=None, help=f"server URL (QTTS_URL, default {DEFAULT_URL})")
    say.add_argument("--key", default=None, help="API key (QTTS_KEY)")
    say.add_argument("--timeout", type=float, default=600.0, help="seconds to wait in all")
    say.set_defaults(func=say_command)


def say_command(args: argparse.Namespace) -> int:
    status = 1
    try:
        return _say(args)
    except SayError as exc:
        message, status = str(exc), exc.status
    except httpx.ConnectError as exc:
        message = (f"Cannot reach the server at {server_url(args.url)} ({exc}). Is it running? "
                   "Set --url or QTTS_URL.")
    except httpx.TimeoutException:
        message = f"The server did not answer within --timeout ({args.timeout:g} s)."
    except httpx.HTTPError as exc:  # e.g. a stream the server cut short: the audio is partial
        message = sentence(f"the connection failed: {type(exc).__name__}: {exc}")
    print(f"qtts say: {message}", file=sys.stderr)
    return status


def server_url(url: str | None) -> str:
    """The server's base URL: the flag, QTTS_URL or the default, without a trailing `/v1`
    (the openai SDK's base_url; the routes this command calls already start with /v1)."""
    url = (url or os.environ.get("QTTS_URL") or DEFAULT_URL).rstrip("/")
    return url[:-3] if url.endswith("/v1") else url


def _say(args: argparse.Namespace) -> int:
    text = sys.stdin.read() if args.text == "-" else args.text
    if not text.strip():
        raise SayError("Nothing to say: the text is empty.", status=2)
    fmt = args.format or _format_of(args.output) or "mp3"
    output = args.output or f"speech.{fmt}"
    url = server_url(args.url)
    key = args.key or os.environ.get("QTTS_KEY") or ""
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    body: dict = {"model": args.model, "input": text, "voice": args.voice,
                  "language": args.language, "response_format": fmt}
    if args.instructions:
        body["instructions"] = args.instructions
    if args.seed is not None:
        body["seed"] = args.seed
    with httpx.Client(base_url=url, headers=headers, timeout=httpx.Timeout(args.timeout)) as client:
        if args.job or len(text) > JOB_THRESHOLD_CHARS:
            return _run_job(client, body, output, args.timeout)
        try:
            return _speak(client, body, output, stream=args.stream)
        except _TooLong:
            print("qtts say: The text is longer than one request allows, so it goes as a job.",
                  file=sys.stderr)
            return _run_job(client, body, output, args.timeout)


def _format_of(output: str | None) -> str | None:
    """The format `-o`'s extension names; None without an extension (or for stdout)."""
    if not output or output == "-":
        return None
    extension = Path(output).suffix.lower().lstrip(".")
    if not extension:
        return None
    if extension not in _EXTENSION_FORMATS:
        names = ", ".join(f".{e}" for e in _EXTENSION_FORMATS)
        raise SayError(f"Cannot tell the audio format from {output}: .{extension} names none "
                       f"(use {names}), or pass --format.", status=2)
    return _EXTENSION_FORMATS[extension]


class _TooLong(Exception):
    pass


def _speak(client: httpx.Client, body: dict, output: str, *, stream: bool) -> int:
    if stream:
        body = {**body, "stream_format": "audio"}
    started = time.perf_counter()
    with client.stream("POST", "/v1/audio/speech", json=body) as response:
        if response.status_code == 422 and _is_too_long(response):
            raise _TooLong
        _raise_for_envelope(response)
        written, first = 0, None
        with _open_output(output) as sink:
            for chunk in response.iter_bytes():
                if chunk and first is None:
                    first = time.perf_counter() - started
                sink.write(chunk)
                sink.flush()
                written += len(chunk)
    if written == 0:
        raise SayError("The server answered with no audio.")
    seconds = response.headers.get("X-Audio-Duration")
    about = f"{seconds} s of audio, " if seconds else ""
    ttfa = f"; first audio after {first * 1000:.0f} ms" if stream and first is not None else ""
    _note(output, f"{about}{written} bytes{ttfa}")
    return 0


def _run_job(client: httpx.Client, body: dict, output: str, timeout: float) -> int:
    job_body = {k: v for k, v in body.items() if k != "instructions"}
    if body.get("instructions"):
        key = "description" if body["model"].lower() == "voicedesign" else "instructions"
        job_body[key] = body["instructions"]
    response = client.post("/v1/jobs", json=job_body)
    _raise_for_envelope(response)
    job = response.json()
    job_id = job["id"]
    print(f"qtts say: Job {job_id} submitted.", file=sys.stderr)
    deadline = time.monotonic() + timeout
    bar = ProgressBar(sys.stderr)
    while job["status"] not in ("succeeded", "failed"):
        bar.show(job.get("progress") or 0.0, job["status"])
        if time.monotonic() > deadline:
            bar.end()
            raise SayError(f"Job {job_id} is still {job['status']} after {timeout:.0f} s; "
                           f"its audio will be at GET /v1/jobs/{job_id}/audio.")
        time.sleep(0.5)  # polling the server's job status: nothing to wait on locally
        response = client.get(f"/v1/jobs/{job_id}")
        _raise_for_envelope(response)
        job = response.json()
    if job["status"] == "failed":
        bar.end()
        raise SayError(sentence(f"job {job_id} failed: {_job_error(job.get('error'))}"))
    bar.show(1.0, "succeeded")
    bar.end()
    response = client.get(f"/v1/jobs/{job_id}/audio")
    _raise_for_envelope(response)
    with _open_output(output) as sink:
        sink.write(response.content)
    _note(output, f"{job.get('audio_seconds')} s of audio, {len(response.content)} bytes "
                  f"(job {job_id})")
    return 0


class ProgressBar:
    """One line on a terminal (redrawn), or a line per 10% step when the stream is a file."""

    def __init__(self, stream: IO[str], width: int = 30):
        self.stream, self.width = stream, width
        self.tty = stream.isatty()
        self._last_step = -1

    def show(self, fraction: float, label: str) -> None:
        fraction = min(max(fraction, 0.0), 1.0)
        filled = int(round(fraction * self.width))
        line = f"[{'#' * filled}{'.' * (self.width - filled)}] {fraction * 100:5.1f}% {label}"
        if self.tty:
            self.stream.write("\r" + line)
        elif int(fraction * 10) != self._last_step:
            self._last_step = int(fraction * 10)
            self.stream.write(line + "\n")
        self.stream.flush()

    def end(self) -> None:
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()


# ------------------------------------------------------------------------------ helpers
def _envelope(response: httpx.Response) -> dict:
    try:
        response.read()
        error = response.json().get("error")
        return error if isinstance(error, dict) else {}
    except Exception:  # noqa: BLE001 - not JSON: report the status alone
        return {}


def _is_too_long(response: httpx.Response) -> bool:
    error = _envelope(response)
    return (error.get("param") in ("input", "text")
            and "characters long; at most" in (error.get("message") or ""))


def _raise_for_envelope(response: httpx.Response) -> None:
    if response.status_code < 400:
        return
    error = _envelope(response)
    code = error.get("code") or "http_error"
    param = f" ({error['param']})" if error.get("param") else ""
    message = sentence(error.get("message") or response.reason_phrase)
    hint = ""
    if response.status_code == 401:
        hint = " Pass --key or set QTTS_KEY to an API key of your tenant."
    elif response.status_code == 404 and not error:
        hint = " Is --url (or QTTS_URL) the server's address?"
    elif response.status_code in (429, 503) and response.headers.get("Retry-After"):
        hint = f" Retry after {response.headers['Retry-After']} s."
    request_id = f" [request {error['request_id']}]" if error.get("request_id") else ""
    raise SayError(f"{response.status_code} {code}{param}: {message}{hint}{request_id}")


def _job_error(error) -> str:
    if isinstance(error, dict):
        return f"{error.get('code', 'error')}: {error.get('message', error)}"
    return str(error)


class _open_output:
    """The output file, or stdout's binary buffer for "-"."""

    def __init__(self, output: str):
        self.output = output
        self.file: IO[bytes] | None = None

    def __enter__(self) -> IO[bytes]:
        if self.output == "-":
            return sys.stdout.buffer
        try:
            self.file = open(self.output, "wb")  # noqa: SIM115 - closed in __exit__
        except OSError as exc:
            raise SayError(f"Cannot write {self.output}: {exc.strerror}.") from None
        return self.file

    def __exit__(self, *exc) -> None:
        if self.file is not None:
            self.file.close()


def _note(output: str, what: str) -> None:
    where = "stdout" if output == "-" else output
    print(f"qtts say: Wrote {where}: {what}.", file=sys.stderr)
