"""A job's word timestamps and its captions: stored sealed beside its result when the job asks
for them (a 404 naming the field when it did not), timed across its segments' joins, and made
into WebVTT and SRT cues that independent readers (webvtt-py, srt) parse: every word of the
text in order, cues inside the audio, ending at sentences or at the line length asked."""

from __future__ import annotations

import asyncio
import io
import re

import numpy as np
import pytest
import srt
import webvtt

from serve_app.platform.crypto import MAGIC, Keyring, generate_key
from serve_app.platform.errors import NotFound
from serve_app.platform.jobs import JobRequest, JobStore, SegmentAudio
from serve_app.platform.jobs.store import ClaimedJob
from serve_app.protocol.timestamps import WordTimestamp, WordTimings
from serve_app.synthesis import captions
from serve_app.synthesis.job_synthesis import JobWords
from serve_app.synthesis.word_timing import SpokenText, SpokenWord, estimate, joined, source_words

RATE = 24_000
TEXT = ("The first sentence is short. The second one goes on for quite a while longer, "
        "well past what one caption line holds! 第三句话是中文。And a last one?")
WORD = re.compile(r"[\u4e00-\u9fff]|[^\W_\u4e00-\u9fff]+")


def estimated(text: str, seconds: float) -> WordTimings:
    """Plain-text words estimated over `seconds` (what the service does with no aligner)."""
    spoken = SpokenText(tuple(SpokenWord(m.group(), 0, m.start(), m.end())
                              for m in WORD.finditer(text)), 0.0, (0.0,))
    return WordTimings(words=source_words(spoken, estimate(spoken, seconds), text),
                       source="estimate")


async def synthesize(job: ClaimedJob, segment: str, index: int) -> SegmentAudio:
    return SegmentAudio(np.full(len(segment) * RATE // 50, 0.1, dtype=np.float32), RATE)


async def timings(job, segments, pieces, starts, scale):
    if job.request.params.timestamps != "word":
        return None
    text, at, timed = job.request.text, 0, []
    for segment, piece, start in zip(segments, pieces, starts, strict=True):
        offset = text.find(segment, at)
        at = offset + len(segment)
        timed.append((estimated(segment, piece.audio.size / RATE), start, offset))
    duration = (starts[-1] + pieces[-1].audio.size / RATE) * scale
    words = joined(timed, scale, duration)
    return JobWords(words=words.words, source=words.source, text=text).model_dump_json().encode()


def job_store(platform, keyring: Keyring) -> JobStore:
    return JobStore(platform.db, platform.blobs, keyring, lease_s=60, max_attempts=3,
                    max_text_chars=1000)


def run_job(platform, timestamps: str = "word", speed: float = 1.0):
    platform.tenants.create("acme")
    principal = platform.keys.verify(platform.keys.create("acme").secret)
    runner = platform.job_runner(synthesize, timings=timings)

    async def main():
        ticket = await platform.submit_job(principal, JobRequest(
            model="CustomVoice", text=TEXT,
            params={"speaker": "Vivian", "timestamps": timestamps},
            output={"format": "wav", "speed": speed}))
        while await runner.run_available():
            await runner.drain()
        return ticket.id

    job_id = asyncio.run(main())
    return principal, job_id, asyncio.run(platform.job_status(principal, job_id))


def test_a_jobs_words_cover_its_text_in_order_inside_its_audio(platform):
    principal, job_id, status = run_job(platform)
    words = JobWords.model_validate_json(asyncio.run(platform.job_words(principal, job_id)))
    assert words.text == TEXT and words.source == "estimate"
    last = 0.0
    for w in words.words:
        assert last <= w.start <= w.end <= status.audio_seconds + 1e-6
        assert TEXT[w.char_start:w.char_end] == w.word
        last = w.end
    assert [w.word for w in words.words] == [m.group() for m in WORD.finditer(TEXT)]


def test_a_rendered_speed_scales_the_stored_times(platform):
    principal, job_id, status = run_job(platform, speed=2.0)
    words = JobWords.model_validate_json(asyncio.run(platform.job_words(principal, job_id)))
    assert words.words[-1].end <= status.audio_seconds + 1e-6
    assert words.words[-1].end > status.audio_seconds * 0.8


def test_the_words_are_sealed_at_rest_and_rotate_with_the_result(platform, tmp_path):
    principal, job_id, _ = run_job(platform)
    plain = asyncio.run(platform.job_words(principal, job_id))
    (blob,) = (tmp_path / "blobs" / "jobs" / principal.tenant_id / job_id).glob("words-*.json")
    assert blob.read_bytes().startswith(MAGIC) and b"first sentence" not in blob.read_bytes()
    old_key = platform.args.voice_encryption_keys.get_secret_value()
    new_key = generate_key()
    assert job_store(platform, Keyring.parse(f"{new_key},{old_key}")).reencrypt()[
        "job_results"] == 1
    assert job_store(platform, Keyring.parse(new_key)).words(principal.tenant_id, job_id) == plain


def test_a_job_without_timestamps_has_none_to_caption(platform):
    principal, job_id, _ = run_job(platform, timestamps="none")
    with pytest.raises(NotFound, match="timestamps 'word'"):
        asyncio.run(platform.job_words(principal, job_id))


# ---------------------------------------------------------------------------------- captions
def words_of(seconds: float = 12.0) -> list[WordTimestamp]:
    return estimated(TEXT, seconds).words


@pytest.mark.parametrize("max_chars", [20, 42])
def test_webvtt_parses_and_its_cues_hold_every_word_in_order(max_chars):
    words = words_of()
    text = captions.webvtt(captions.cues(words, TEXT, max_chars=max_chars))
    parsed = webvtt.from_buffer(io.StringIO(text))
    assert len(parsed.captions) >= 4  # at least one cue per sentence
    joined_text = " ".join(c.text.replace("\n", " ") for c in parsed.captions)
    at = 0
    for w in words:  # every word, in order
        at = joined_text.index(w.word, at) + len(w.word)
    last = 0.0
    for c in parsed.captions:
        start, end = c.start_time.in_milliseconds() / 1000, c.end_time.in_milliseconds() / 1000
        assert last - 1e-3 <= start < end <= 12.0 + 1e-3
        last = end
        assert all(len(line) <= max_chars for line in c.lines) and len(c.lines) <= 2


def test_srt_parses_with_the_same_cues_as_webvtt():
    cue_list = captions.cues(words_of(), TEXT)
    parsed = list(srt.parse(captions.srt(cue_list)))
    vtt = webvtt.from_buffer(io.StringIO(captions.webvtt(cue_list)))
    assert [p.content for p in parsed] == [c.text for c in vtt.captions]
    assert [round(p.start.total_seconds(), 3) for p in parsed] == \
        [c.start_time.in_milliseconds() / 1000 for c in vtt.captions]


def test_cues_end_at_sentence_ends():
    cue_list = captions.cues(words_of(), TEXT, max_chars=200)
    assert [" ".join(c.lines) for c in cue_list] == [
        "The first sentence is short.",
        "The second one goes on for quite a while longer, well past what one caption line "
        "holds!", "第三句话是中文。", "And a last one?"]
