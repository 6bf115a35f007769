"""Each surface's path through the one service (issue 10), pinned by what it leaves behind:
the admission (X-RateLimit-* on the answer, one request of the tenant's minute), and the one
usage row it is billed as (request id, model, endpoint, saved voice, streamed, characters,
audio seconds), read from the graph's platform database. Real HTTP against the shared graph.
"""

from __future__ import annotations

import time
import uuid

import httpx
import pytest
from sqlalchemy import select

from serve_app.platform.config import PlatformArgs
from serve_app.platform.db import Database
from serve_app.platform.jobs.text import segment_text
from serve_app.platform.models import UsageRecordRow
from serve_app.tools.profiles import load_profile
from tests.graph.conftest import CPU_PROFILE
from tests.graph.tenants import as_tenant, create_tenant_key, save_clone_voice, unique_name
from tests.samples import wav_bytes

LIMIT = 1000  # requests per minute: high enough never to refuse, set so admission shows


@pytest.fixture(scope="module")
def usage_db(graph) -> Database:
    """The graph's platform database (SQLite in the session's QTTS_DATA_DIR)."""
    return Database(PlatformArgs().resolved_database_url())


@pytest.fixture(scope="module")
def key(graph) -> str:
    return create_tenant_key(graph.base_url, graph.admin_token, unique_name("paths"),
                             requests_per_minute=LIMIT, characters_per_period=10_000_000)


@pytest.fixture(scope="module")
def voice(graph, key) -> tuple[str, str]:
    """The tenant's saved voice: (id, name)."""
    name = unique_name("paths-voice")
    return save_clone_voice(graph, key, name)["id"], name


def request_id(surface: str) -> str:
    return f"path-{surface}-{uuid.uuid4().hex[:12]}"


def usage_row(db: Database, rid: str, timeout_s: float = 30.0) -> UsageRecordRow:
    """The usage row billed under `rid` (written right after the answer)."""
    deadline = time.monotonic() + timeout_s
    while True:
        with db.transaction() as session:
            row = session.scalars(select(UsageRecordRow)
                                  .where(UsageRecordRow.request_id == rid)).first()
            if row is not None:
                session.expunge(row)
                return row
        assert time.monotonic() < deadline, f"no usage row {rid}"
        time.sleep(0.2)


def rows_like(db: Database, prefix: str) -> list[UsageRecordRow]:
    with db.transaction() as session:
        rows = session.scalars(select(UsageRecordRow)
                               .where(UsageRecordRow.request_id.startswith(prefix))
                               .order_by(UsageRecordRow.request_id)).all()
        for row in rows:
            session.expunge(row)
        return list(rows)


def assert_admitted(r: httpx.Response) -> int:
    """The answer of an admitted request: the tenant's limit and what is left of it."""
    assert r.headers["X-RateLimit-Limit-Requests"] == str(LIMIT), dict(r.headers)
    return int(r.headers["X-RateLimit-Remaining-Requests"])


def assert_billed(row: UsageRecordRow, *, model: str, endpoint: str, characters: int,
                  streamed: bool = False, voice: str | None = None) -> None:
    assert (row.model, row.endpoint, row.status, row.streamed, row.voice) == (
        model, endpoint, "ok", streamed, voice)
    assert row.characters == characters and row.audio_seconds > 0


# ---------------------------------------------------------------------- direct requests
def test_a_seed_synthesis_is_admitted_and_billed_once_as_custom_voice(graph, key, usage_db):
    rid, text = request_id("seed"), "The seed's own request."
    with as_tenant(graph, key) as http:
        r = http.post("/api/tts/synthesize", headers={"X-Request-ID": rid},
                      json={"text": text, "speaker": "Vivian", "seed": 5})
    assert r.status_code == 200, r.text
    assert_admitted(r)
    row = usage_row(usage_db, rid)
    assert_billed(row, model="CustomVoice", endpoint="synthesize", characters=len(text))
    assert abs(row.audio_seconds - r.json()["duration"]) < 0.01


@pytest.mark.parametrize("by", ["id", "name"])
def test_a_saved_voice_streams_by_id_or_name_billed_as_voice_clone_under_its_id(
        graph, key, voice, usage_db, by):
    rid, text = request_id(f"stream-{by}"), "A saved voice, streamed."
    with as_tenant(graph, key) as http:
        r = http.post("/v1/audio/speech", headers={"X-Request-ID": rid}, json={
            "model": "tts-1", "voice": voice[0] if by == "id" else voice[1], "input": text,
            "response_format": "pcm", "stream_format": "audio", "seed": 3})
    assert r.status_code == 200 and r.content, r.text
    assert_admitted(r)
    row = usage_row(usage_db, rid)
    assert_billed(row, model="VoiceClone", endpoint="speech", characters=len(text),
                  streamed=True, voice=voice[0])  # the id, whichever way it was named
    assert abs(row.audio_seconds - len(r.content) / 2 / 24_000) < 0.01


def test_a_designed_voice_request_is_billed_as_voice_design(graph, key, usage_db):
    rid, text = request_id("design"), "Designed on the spot."
    with as_tenant(graph, key) as http:
        r = http.post("/v1/audio/design", headers={"X-Request-ID": rid}, json={
            "input": text, "description": "A calm, low voice.", "response_format": "wav",
            "seed": 2})
    assert r.status_code == 200 and r.content[:4] == b"RIFF", r.text
    assert_admitted(r)
    row = usage_row(usage_db, rid)
    assert_billed(row, model="VoiceDesign", endpoint="design", characters=len(text))
    assert abs(row.audio_seconds - float(r.headers["X-Audio-Duration"])) < 0.01


def test_a_clone_request_is_billed_as_voice_clone_without_a_saved_voice(graph, key, usage_db):
    rid, text = request_id("clone"), "Cloned from the upload."
    with as_tenant(graph, key) as http:
        r = http.post("/v1/audio/clone", headers={"X-Request-ID": rid},
                      data={"input": text, "x_vector_only": "true", "response_format": "wav",
                            "seed": "4"},
                      files={"reference_audio": ("ref.wav", wav_bytes(2.0), "audio/wav")})
    assert r.status_code == 200 and r.content[:4] == b"RIFF", r.text
    assert_admitted(r)
    row = usage_row(usage_db, rid)
    assert_billed(row, model="VoiceClone", endpoint="clone", characters=len(text))


def test_a_refused_request_is_billed_nothing(graph, key, usage_db):
    rid = request_id("refused")
    with as_tenant(graph, key) as http:
        r = http.post("/v1/audio/speech", headers={"X-Request-ID": rid},
                      json={"model": "tts-1", "voice": "voice_nobody", "input": "Nobody."})
    assert r.status_code == 404 and r.json()["error"]["param"] == "voice"
    time.sleep(1.0)  # give a (wrong) usage write the time the others take
    assert rows_like(usage_db, rid) == []


# ------------------------------------------------------------------------------- jobs
def test_a_job_of_three_segments_is_one_request_and_three_billed_segments(graph, key, usage_db):
    """Admitted once at submission (its segments use none of the tenant's minute), each
    segment billed as its own row, the joined audio rendered as a direct request's is."""
    text = " ".join(f"This is sentence number {i} of a job, split at its end." for i in range(12))
    segment_chars = load_profile(CPU_PROFILE).args.platform.jobs.segment_chars
    segments = segment_text(text, segment_chars)
    assert len(segments) == 3
    with as_tenant(graph, key) as http:
        r = http.post("/v1/jobs", json={"input": text, "voice": "alloy", "seed": 4,
                                        "max_new_tokens": 16, "response_format": "mp3"})
        assert r.status_code == 202, r.text
        left_after_submit = assert_admitted(r)
        job = r.json()
        deadline = time.monotonic() + 180
        while job["status"] not in ("succeeded", "failed"):
            assert time.monotonic() < deadline, job
            time.sleep(0.5)
            job = http.get(f"/v1/jobs/{job['id']}").json()
        assert job["status"] == "succeeded", job
        audio = http.get(f"/v1/jobs/{job['id']}/audio")  # rendered as a direct request's mp3
        assert audio.headers["content-type"] == "audio/mpeg" and audio.content
        # the segments did not use up the tenant's minute: the next request is the next one
        # (unless the minute turned meanwhile, which resets the count)
        after = http.post("/api/tts/synthesize", json={"text": "Next.", "speaker": "Ryan"})
        assert assert_admitted(after) in (left_after_submit - 1, LIMIT - 1)
    rows = rows_like(usage_db, f"{job['id']}:")
    # the submission is one priced operation row; each segment is a synthesis row
    submitted = [row for row in rows if row.operation == "job"]
    assert [row.request_id for row in submitted] == [f"{job['id']}:submitted"]
    assert submitted[0].characters == 0 and submitted[0].audio_ms == 0
    rows = [row for row in rows if row.operation == "synthesis"]
    assert [row.request_id for row in rows] == [f"{job['id']}:{i}" for i in range(3)]
    for row, segment in zip(rows, segments, strict=True):
        assert_billed(row, model="CustomVoice", endpoint="jobs", characters=len(segment))
    assert abs(sum(row.audio_seconds for row in rows) - job["audio_seconds"]) < 0.2  # crossfades
