"""Durable async jobs: typed parameters, segmentation, click-free joins, leases, a runner
killed mid-job (and one resumed at the segment it stopped at), results written once and sealed
at rest, a fair queue across tenants with a per-tenant cap, tenant isolation, signed webhooks
with retries."""

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
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import sqlalchemy as sa
from pydantic import ValidationError

from deployments.audio.marking import AIMark, read_mark
from serve_app.platform.crypto import MAGIC, DecryptionError, Keyring, generate_key
from serve_app.platform.errors import InvalidRequest, JobNotReady, NotFound
from serve_app.platform.jobs import (
    JobParams,
    JobRequest,
    JobStore,
    SegmentAudio,
    SignatureError,
    crossfade_join,
    render_output,
    segment_text,
    sign,
    split_sentences,
    verify_signature,
)
from serve_app.platform.jobs.store import ClaimedJob
from serve_app.platform.models import JobRow, utcnow
from serve_app.platform.usage import UsageRecord

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
    platform.tenants.create(name)
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
    assert read_mark(audio) == AIMark("CustomVoice", ticket.id)  # marked as AI-generated


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
         platform.args.voice_encryption_keys.get_secret_value(), str(marker),
         *([platform.args.resolved_admin_database_url()]
           if platform.args.admin_database_url else [])],
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


# ------------------------------------------------------------------------- typed parameters
def test_job_params_are_typed_and_a_stored_dict_still_builds_a_request():
    request = JobRequest(model="CustomVoice", text="Hi.", params={
        "language": "auto", "seed": 7, "max_new_tokens": None, "speaker": "Vivian",
        "instruct": None})
    assert isinstance(request.params, JobParams)
    assert (request.params.seed, request.params.speaker, request.params.voice) == (7, "Vivian", None)
    for bad in ({"sped": 1.0}, {"seed": "7"}, {"seed": -1}, {"max_new_tokens": 1}):
        with pytest.raises(ValidationError):
            JobRequest(model="CustomVoice", text="Hi.", params=bad)
    assert JobRequest.model_validate(request.model_dump(mode="json")) == request


def test_a_claimed_job_carries_its_typed_params(platform):
    principal = tenant_principal(platform)
    platform.jobs.submit(principal.tenant_id, JobRequest(
        model="VoiceDesign", text="Hi.", params={"description": "a calm voice", "seed": 3}))
    job = platform.jobs.claim("runner")
    assert job.request.params == JobParams(description="a calm voice", seed=3)


def _reflected(db, *tables):
    metadata = sa.MetaData()
    metadata.reflect(db.engine, only=list(tables))
    return metadata.tables


def test_rows_and_results_stored_before_revision_0002_still_load_and_rotation_seals_them(
        database_url, tmp_path):
    """A job row with the untyped params dict and a result written in the clear (revision
    0001) load after the upgrade; the key rotation then seals the result."""
    from platform_testing import platform_args

    from serve_app.platform.blobs import LocalBlobStore
    from serve_app.platform.db import Database
    from serve_app.platform.service import Platform

    old = Database(database_url)
    old.migrate("0001")
    tables = _reflected(old, "tenants", "jobs")
    now = utcnow().replace(tzinfo=None)
    wav = b"RIFF" + b"\0" * 100
    result_key = "jobs/tenant_old/job_done/result-1.wav"
    LocalBlobStore(tmp_path / "blobs").put(result_key, wav)
    common = {"tenant_id": "tenant_old", "api_key_id": None, "max_attempts": 3,
              "webhook_attempts": 0, "created_at": now}
    with old.engine.begin() as connection:
        connection.execute(tables["tenants"].insert().values(
            id="tenant_old", name="old", disabled=False, created_at=now))
        connection.execute(tables["jobs"].insert().values(
            id="job_done", status="succeeded", progress=1.0, attempts=1, finished_at=now,
            result_blob=result_key, result_content_type="audio/wav", result_audio_seconds=1.0,
            request={"model": "CustomVoice", "text": "Hi.", "output": {"format": "wav"},
                     "params": {"language": "auto", "seed": 7, "max_new_tokens": None,
                                "speaker": "Vivian", "instruct": None}}, **common))
        connection.execute(tables["jobs"].insert().values(
            id="job_queued", status="queued", progress=0.0, attempts=0,
            request={"model": "VoiceDesign", "text": "Hi.", "output": {},
                     "params": {"language": "auto", "seed": None, "max_new_tokens": None,
                                "description": "a calm voice"}}, **common))
    old.dispose()

    platform = Platform.open(platform_args(database_url, tmp_path), migrate=True)
    try:
        assert platform.jobs.get("tenant_old", "job_done").status == "succeeded"
        assert platform.jobs.result("tenant_old", "job_done") == (wav, "audio/wav")
        job = platform.jobs.claim("runner")
        assert job.id == "job_queued" and job.request.params.description == "a calm voice"
        assert (job.segments_done, job.segment_chars) == (0, None)
        assert platform.jobs.reencrypt()["job_results"] == 1
        assert platform.jobs.reencrypt()["job_results"] == 0
        sealed = [p for p in (tmp_path / "blobs" / "jobs" / "tenant_old" / "job_done").iterdir()]
        assert len(sealed) == 1 and wav not in sealed[0].read_bytes()
        assert sealed[0].read_bytes().startswith(MAGIC)
        assert platform.jobs.result("tenant_old", "job_done") == (wav, "audio/wav")
    finally:
        platform.close()


# ------------------------------------------------------------------------ sealed results
def test_job_results_are_sealed_at_rest_and_served_in_the_clear(platform, tmp_path):
    principal = tenant_principal(platform)
    ticket = asyncio.run(platform.submit_job(principal, JobRequest(
        model="CustomVoice", text=LONG_TEXT, output={"format": "wav"})))
    run_jobs(platform)
    audio, content_type = asyncio.run(platform.job_result(principal, ticket.id))
    assert content_type == "audio/wav" and audio.startswith(b"RIFF")
    (blob,) = (tmp_path / "blobs" / "jobs" / principal.tenant_id / ticket.id).iterdir()
    at_rest = blob.read_bytes()
    assert at_rest.startswith(MAGIC) and b"RIFF" not in at_rest and audio[44:1044] not in at_rest
    # bound to its job: the same bytes under another job's name do not open
    with pytest.raises(DecryptionError):
        platform.keyring.decrypt(at_rest, f"job:{principal.tenant_id}:job_other:result".encode())
    # key rotation: re-sealed with the newest key, readable with it alone
    old_key = platform.args.voice_encryption_keys.get_secret_value()
    new_key = generate_key()
    rotated = job_store(platform, Keyring.parse(f"{new_key},{old_key}"))
    assert rotated.reencrypt() == {"webhook_secrets": 0, "job_results": 1, "job_segments": 0}
    assert job_store(platform, Keyring.parse(new_key)).result(principal.tenant_id, ticket.id) == \
        (audio, "audio/wav")
    with pytest.raises(DecryptionError, match="not configured"):
        platform.jobs.result(principal.tenant_id, ticket.id)


def job_store(platform, keyring: Keyring) -> JobStore:
    return JobStore(platform.db, platform.blobs, keyring, lease_s=60, max_attempts=3,
                    max_text_chars=1000)


# ------------------------------------------------------------------------------- resume
FOUR_SEGMENTS = ("The first segment ends right here. The second one follows it. "
                 "Then a third sentence is spoken. And the fourth one ends it.")


def job_row(platform, job_id: str) -> JobRow:
    with platform.db.admin_transaction() as session:
        return session.get(JobRow, job_id)


def test_a_runner_killed_after_two_of_four_segments_is_resumed_at_the_third(platform, tmp_path):
    segments = segment_text(FOUR_SEGMENTS, platform.args.jobs.segment_chars)
    assert len(segments) == 4
    principal = tenant_principal(platform)
    ticket = asyncio.run(platform.submit_job(principal, JobRequest(
        model="CustomVoice", text=FOUR_SEGMENTS, output={"format": "wav"})))
    finished: dict[str, list[int]] = {"first": [], "second": []}

    def metered(runner_name, hang_at=None):
        async def synthesize(job, segment, index):
            if index == hang_at:  # the runner is killed while this segment is in flight
                killed_mid_segment.set()
                await asyncio.Event().wait()
            out = await fake_synthesize(job, segment, index)
            platform.usage.record(UsageRecord(  # per-segment metering, as the ingress does
                request_id=f"{job.id}:{index}", tenant_id=job.tenant_id, model="CustomVoice",
                endpoint="jobs", characters=len(segment), audio_seconds=out.audio.size / RATE,
                status="ok"))
            finished[runner_name].append(index)
            return out
        return synthesize

    killed_mid_segment = asyncio.Event()

    async def first_runner_dies():
        runner = platform.job_runner(metered("first", hang_at=2))
        await runner.run_available()
        await asyncio.wait_for(killed_mid_segment.wait(), 30)
        await runner.stop()

    asyncio.run(first_runner_dies())
    row = job_row(platform, ticket.id)
    assert (row.status, row.segments_done, row.attempts) == ("running", 2, 1)
    checkpoint = (tmp_path / "blobs" / "jobs" / principal.tenant_id / ticket.id / "segment-0")
    assert checkpoint.read_bytes().startswith(MAGIC)  # sealed like the result
    assert platform.jobs.claim("too-early") is None  # the dead runner's lease still holds

    platform.jobs.clock = lambda: utcnow() + timedelta(seconds=platform.args.jobs.lease_s + 1)
    joined = []

    def encode(audio, rate, output):
        joined.append(audio)
        return render_output(audio, rate, output)

    run_jobs(platform, runner=platform.job_runner(metered("second"), encode=encode))
    assert finished == {"first": [0, 1], "second": [2, 3]}
    status = platform.jobs.get(principal.tenant_id, ticket.id)
    assert (status.status, status.attempts) == ("succeeded", 2)
    expected = crossfade_join(
        [asyncio.run(fake_synthesize(None, s, i)).audio for i, s in enumerate(segments)],
        RATE, platform.args.jobs.crossfade_ms)
    np.testing.assert_array_equal(joined[0], expected)
    audio, _ = asyncio.run(platform.job_result(principal, ticket.id))
    samples, _ = sf.read(io.BytesIO(audio), dtype="float32")
    np.testing.assert_allclose(samples, expected, atol=1e-4)
    usage = platform.usage.summary(principal.tenant_id)
    assert usage.requests == 4 and usage.characters == sum(len(s) for s in segments)
    leftovers = sorted(p.name for p in checkpoint.parent.iterdir())
    assert leftovers == ["result-2.wav"]  # the checkpoints go once the result is recorded


def test_a_retried_job_keeps_its_finished_segments(platform):
    principal = tenant_principal(platform)
    ticket = platform.jobs.submit(principal.tenant_id,
                                  JobRequest(model="CustomVoice", text=FOUR_SEGMENTS))
    calls = []

    async def flaky(job, segment, index):
        calls.append((job.attempt, index))
        if (job.attempt, index) == (1, 3):
            raise RuntimeError("replica lost")
        return await fake_synthesize(job, segment, index)

    run_jobs(platform, flaky)
    assert calls == [(1, 0), (1, 1), (1, 2), (1, 3), (2, 3)]
    assert platform.jobs.get(principal.tenant_id, ticket.id).status == "succeeded"


def test_a_resumed_job_is_cut_at_the_segment_length_it_started_with(platform):
    principal = tenant_principal(platform)
    ticket = platform.jobs.submit(principal.tenant_id,
                                  JobRequest(model="CustomVoice", text=FOUR_SEGMENTS))
    job = platform.jobs.claim("first")
    first = segment_text(FOUR_SEGMENTS, 40)
    out = asyncio.run(fake_synthesize(job, first[0], 0))
    assert platform.jobs.checkpoint(job, 0, out.audio, out.sample_rate, segment_chars=40,
                                    progress=0.2)
    platform.jobs.clock = lambda: utcnow() + timedelta(seconds=platform.args.jobs.lease_s + 1)
    seen = []

    async def synthesize(job, segment, index):
        seen.append((index, segment))
        return await fake_synthesize(job, segment, index)

    runner = platform.job_runner(synthesize)
    runner.args = runner.args.model_copy(update={"segment_chars": 200})  # redeployed
    run_jobs(platform, runner=runner)
    assert seen == [(i, s) for i, s in enumerate(first)][1:]
    assert platform.jobs.get(principal.tenant_id, ticket.id).status == "succeeded"


# ---------------------------------------------------------------------------- fair queue
def test_a_flood_from_one_tenant_does_not_hold_back_another_tenants_job(platform):
    a, b = tenant_principal(platform, "a"), tenant_principal(platform, "b")
    for i in range(30):
        platform.jobs.submit(a.tenant_id, JobRequest(model="CustomVoice", text=f"Flood {i}."))
    late = platform.jobs.submit(b.tenant_id, JobRequest(model="CustomVoice", text="Me too."))
    started = []

    async def synthesize(job, segment, index):
        started.append(job.id)
        return await fake_synthesize(job, segment, index)

    run_jobs(platform, synthesize)  # concurrency 2, max_running_per_tenant 2
    assert late.id in started[:2] and len(started) == 31


def test_claims_go_round_robin_and_the_per_tenant_cap_holds(platform):
    a, b, c = (tenant_principal(platform, name).tenant_id for name in "abc")
    for tenant, n in ((a, 3), (b, 3), (c, 1)):
        for i in range(n):
            platform.jobs.submit(tenant, JobRequest(model="CustomVoice", text=f"{i}."))
    # one slot: finish each job before the next claim -> tenants take turns
    served = []
    while (job := platform.jobs.claim("runner", max_running_per_tenant=1)) is not None:
        served.append(job.tenant_id)
        assert platform.jobs.complete(job, b"x", "audio/wav", "wav", 0.1)
    assert served == [a, b, c, a, b, a, b]

    for i in range(5):
        platform.jobs.submit(a, JobRequest(model="CustomVoice", text=f"more {i}."))
    platform.jobs.submit(b, JobRequest(model="CustomVoice", text="one."))
    claims = [platform.jobs.claim("runner", max_running_per_tenant=2) for _ in range(4)]
    assert [j.tenant_id for j in claims[:3]] == [a, b, a] and claims[3] is None  # a is at 2
    platform.jobs.complete(claims[0], b"x", "audio/wav", "wav", 0.1)
    assert platform.jobs.claim("runner", max_running_per_tenant=2).tenant_id == a


def test_the_per_tenant_cap_holds_with_several_runners_claiming_at_once(platform):
    tenants = [tenant_principal(platform, name).tenant_id for name in "abc"]
    for tenant in tenants:
        for i in range(6):
            platform.jobs.submit(tenant, JobRequest(model="CustomVoice", text=f"{i}."))
    claims = []
    lock = threading.Lock()
    go = threading.Barrier(4)

    def claim_all(owner):
        go.wait()
        while (job := platform.jobs.claim(owner, max_running_per_tenant=2)) is not None:
            with lock:
                claims.append(job)

    threads = [threading.Thread(target=claim_all, args=(f"runner-{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(j.tenant_id for j in claims) == sorted(tenants * 2)
    assert len({j.id for j in claims}) == 6


# ---------------------------------------------------------------------------------- webhooks
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
