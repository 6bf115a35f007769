"""Durable async jobs: segmentation, click-free joins, leases, a runner killed mid-job,
results written once, tenant isolation, signed webhooks with retries."""

from __future__ import annotations

import asyncio
import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from serve_app.platform.errors import InvalidRequest, JobNotReady, NotFound
from serve_app.platform.jobs import (
    JobRequest,
    SegmentAudio,
    SignatureError,
    crossfade_join,
    segment_text,
    sign,
    split_sentences,
    verify_signature,
)
from serve_app.platform.jobs.store import ClaimedJob
from serve_app.platform.models import utcnow

RATE = 24_000
LONG_TEXT = ("第一句话很短。第二句话稍微长一点，对吧？Then an English sentence follows. "
             "And a question? 最后一句！") * 3


async def fake_synthesize(job: ClaimedJob, segment: str, index: int) -> SegmentAudio:
    """0.01 s of a constant level per character: a step at every join if joined naively."""
    level = 0.5 if index % 2 == 0 else -0.5
    return SegmentAudio(np.full(len(segment) * RATE // 100, level, dtype=np.float32), RATE)


def run_jobs(platform, synthesize=fake_synthesize, runner=None):
    runner = runner or platform.job_runner(synthesize)

    async def main():
        while await runner.run_available():
            await runner.drain()
        await runner.drain()

    asyncio.run(main())
    return runner


def tenant_principal(platform, name="acme"):
    platform.create_tenant(name)
    return platform.keys.verify(platform.keys.create(name).secret)


# --------------------------------------------------------------------------- text and audio
def test_sentences_split_at_chinese_and_latin_punctuation():
    text = "你好。你是谁？I am Dr. Who, e.g. a test! “引号里的话。”Done"
    assert split_sentences(text) == [
        "你好。", "你是谁？", "I am Dr. ", "Who, e.g. ", "a test! ", "“引号里的话。”", "Done"]


def test_long_text_segments_stay_under_the_limit_and_keep_every_character():
    segments = segment_text(LONG_TEXT, 40)
    assert all(0 < len(s) <= 40 for s in segments)
    assert "".join(segments).replace(" ", "") == LONG_TEXT.replace(" ", "")
    assert all(s[-1] in "。？！?." for s in segments)  # every cut falls at a sentence end
    one_run_on = "甲" * 95
    assert [len(s) for s in segment_text(one_run_on, 40)] == [40, 40, 15]


def test_joined_segments_have_no_click_where_they_meet():
    a, b = np.full(2400, 0.5, np.float32), np.full(2400, -0.5, np.float32)
    joined = crossfade_join([a, b, a], RATE, crossfade_ms=10)
    assert len(joined) == 3 * 2400 - 2 * 240
    assert np.abs(np.diff(joined)).max() < 0.01  # naive concatenation jumps by 1.0
    assert abs(joined[0]) < 0.01 and abs(joined[-1]) < 0.01


# ---------------------------------------------------------------------------------- the queue
def test_a_job_runs_to_a_result_with_progress_and_audio(platform):
    principal = tenant_principal(platform)

    async def submit():
        return await platform.submit_job(principal, JobRequest(
            model="CustomVoice", text=LONG_TEXT, params={"speaker": "Vivian"},
            output={"format": "wav"}))

    ticket = asyncio.run(submit())
    assert asyncio.run(platform.job_status(principal, ticket.id)).status == "queued"
    with pytest.raises(JobNotReady):
        asyncio.run(platform.job_result(principal, ticket.id))
    run_jobs(platform)
    status = asyncio.run(platform.job_status(principal, ticket.id))
    assert (status.status, status.progress, status.attempts) == ("succeeded", 1.0, 1)
    audio, content_type = asyncio.run(platform.job_result(principal, ticket.id))
    samples, rate = sf.read(io.BytesIO(audio))
    assert content_type == "audio/wav" and rate == RATE
    n = len(segment_text(LONG_TEXT, platform.args.jobs.segment_chars))
    expected = sum(len(s) * RATE // 100 for s in segment_text(LONG_TEXT, 40)) - (n - 1) * 360
    assert len(samples) == expected
    assert status.audio_seconds == pytest.approx(expected / RATE)


def test_jobs_belong_to_their_tenant(platform):
    a, b = tenant_principal(platform, "a"), tenant_principal(platform, "b")
    ticket = asyncio.run(platform.submit_job(a, JobRequest(model="CustomVoice", text="Hi.")))
    run_jobs(platform)
    for call in (platform.job_status, platform.job_result):
        with pytest.raises(NotFound):
            asyncio.run(call(b, ticket.id))
    assert asyncio.run(platform.list_jobs(b)) == []
    assert [j.id for j in asyncio.run(platform.list_jobs(a))] == [ticket.id]


def test_two_runners_never_claim_the_same_job(platform):
    principal = tenant_principal(platform)
    for i in range(6):
        platform.jobs.submit(principal.tenant_id, JobRequest(model="CustomVoice", text=f"{i}."))
    claims = []
    lock = threading.Lock()

    def claim_all(owner):
        while (job := platform.jobs.claim(owner)) is not None:
            with lock:
                claims.append(job.id)

    threads = [threading.Thread(target=claim_all, args=(f"runner-{i}",)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(claims) == 6 == len(set(claims))


def test_a_runner_killed_mid_job_leaves_it_to_another_which_writes_one_result(platform, tmp_path):
    principal = tenant_principal(platform)
    ticket = platform.jobs.submit(principal.tenant_id,
                                  JobRequest(model="CustomVoice", text="Only once. Twice not."))
    marker = tmp_path / "started"
    worker = subprocess.Popen(
        [sys.executable, str(Path(__file__).with_name("job_worker.py")),
         platform.db.url.render_as_string(hide_password=False), str(tmp_path),
         platform.args.voice_encryption_keys.get_secret_value(), str(marker)],
        cwd=Path(__file__).resolve().parents[2], env={**os.environ, "PYTHONPATH": "."},
    )
    try:
        deadline = time.monotonic() + 60
        while not marker.exists() and worker.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert marker.exists(), "the worker never started the job"
    finally:
        worker.send_signal(signal.SIGKILL)
        worker.wait()
    stale = platform.jobs.get(principal.tenant_id, ticket.id)
    assert (stale.status, stale.attempts) == ("running", 1)
    assert platform.jobs.claim("too-early") is None  # the dead runner's lease still holds
    platform.jobs.clock = lambda: utcnow() + timedelta(seconds=31)  # ... until it expires
    run_jobs(platform)
    done = platform.jobs.get(principal.tenant_id, ticket.id)
    assert (done.status, done.attempts) == ("succeeded", 2)
    # the dead runner coming back and finishing late changes nothing
    zombie = ClaimedJob(ticket.id, principal.tenant_id, None, JobRequest(model="CustomVoice",
                        text="x"), attempt=1, owner="dead")
    assert platform.jobs.complete(zombie, b"late", "audio/wav", "wav", 1.0) is False
    results = list((tmp_path / "blobs" / "jobs" / principal.tenant_id / ticket.id).iterdir())
    assert [p.name for p in results] == ["result-2.wav"]
    assert platform.jobs.result(principal.tenant_id, ticket.id)[0].startswith(b"RIFF")


def test_a_failing_job_is_retried_then_failed_with_its_error(platform):
    principal = tenant_principal(platform)
    ticket = platform.jobs.submit(principal.tenant_id, JobRequest(model="CustomVoice", text="Hi."))
    calls = []

    async def broken(job, segment, index):
        calls.append(job.attempt)
        raise RuntimeError("GPU fell off")

    run_jobs(platform, broken)
    status = platform.jobs.get(principal.tenant_id, ticket.id)
    assert status.status == "failed" and calls == [1, 2, 3]
    assert status.error == {"code": "job_error", "message": "synthesis failed (RuntimeError)"}


def test_an_over_long_job_is_refused_at_submit(platform):
    principal = tenant_principal(platform)
    with pytest.raises(InvalidRequest, match="at most"):
        platform.jobs.submit(principal.tenant_id, JobRequest(
            model="CustomVoice", text="x" * (platform.args.jobs.max_text_chars + 1)))


# ---------------------------------------------------------------------------------- webhooks
class Receiver:
    """A local HTTP server answering with the given statuses in turn."""

    def __init__(self, statuses):
        self.statuses = list(statuses)
        self.received: list[tuple[dict, bytes]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.received.append((dict(self.headers), body))
                status = receiver.statuses.pop(0) if receiver.statuses else 200
                self.send_response(status)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver_factory():
    made = []

    def make(statuses):
        made.append(Receiver(statuses))
        return made[-1]

    yield make
    for r in made:
        r.close()


def test_the_webhook_is_signed_and_retried_with_backoff_until_delivered(platform, receiver_factory):
    principal = tenant_principal(platform)
    receiver = receiver_factory([500, 503, 200])
    ticket = asyncio.run(platform.submit_job(
        principal, JobRequest(model="CustomVoice", text="Hello."), webhook_url=receiver.url))
    assert ticket.webhook_secret and ticket.webhook_secret.startswith("whsec_")
    assert ticket.webhook_secret not in repr(ticket)
    runner = platform.job_runner(fake_synthesize)
    delays = []

    async def no_wait(seconds):
        delays.append(seconds)

    runner.webhooks._sleep = no_wait
    run_jobs(platform, runner=runner)
    assert len(receiver.received) == 3 and delays == [0.01, 0.02]
    headers, body = receiver.received[-1]
    verify_signature(ticket.webhook_secret, body, headers["X-QTTS-Signature"])
    payload = json.loads(body)
    assert payload["type"] == headers["X-QTTS-Event"] == "job.succeeded"
    assert payload["data"]["id"] == ticket.id and payload["data"]["status"] == "succeeded"
    assert len({h["X-QTTS-Delivery"] for h, _ in receiver.received}) == 1
    status = platform.jobs.get(principal.tenant_id, ticket.id)
    assert status.webhook_status == "delivered"


def test_a_webhook_refused_with_a_4xx_is_not_retried(platform, receiver_factory):
    principal = tenant_principal(platform)
    receiver = receiver_factory([410])
    ticket = platform.jobs.submit(principal.tenant_id, JobRequest(model="CustomVoice", text="Hi."),
                                  webhook_url=receiver.url, webhook_secret="whsec_mine")
    assert ticket.webhook_secret is None  # the caller's own secret is never echoed
    run_jobs(platform)
    assert len(receiver.received) == 1
    verify_signature("whsec_mine", receiver.received[0][1],
                     receiver.received[0][0]["X-QTTS-Signature"])
    assert platform.jobs.get(principal.tenant_id, ticket.id).webhook_status == "failed"


def test_signature_verification_refuses_tampering_other_secrets_and_replays():
    body = b'{"type":"job.succeeded"}'
    header = sign("whsec_a", body, timestamp=1_000_000)
    verify_signature("whsec_a", body, header, now=1_000_100)
    for secret, payload, now in (("whsec_a", body + b" ", 1_000_100),
                                 ("whsec_b", body, 1_000_100),
                                 ("whsec_a", body, 1_000_000 + 301)):
        with pytest.raises(SignatureError):
            verify_signature(secret, payload, header, now=now)


def test_webhooks_to_private_addresses_are_refused_unless_allowed(receiver_factory):
    from serve_app.platform.jobs.webhooks import WebhookSender

    receiver = receiver_factory([200])
    sender = WebhookSender(timeout_s=5, max_attempts=2, backoff_s=0.01, backoff_max_s=0.01)
    result = asyncio.run(sender.deliver(receiver.url, "s", "job.succeeded", {}, "d1"))
    assert not result.delivered and "private" in result.error and receiver.received == []
