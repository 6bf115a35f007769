"""Word timestamps and captions through the running graph, timed by its ForcedAligner
deployment (the tiny random-weight checkpoint built with qwen-asr's classes: random times,
repaired by the ingress). Asserted: the source is the aligner, the words are the text's in
order inside the audio, the same whole and streamed, on the speech session, and a job's
captions parse with WebVTT and SRT readers. Never exact times."""

from __future__ import annotations

import base64
import io
import json
import re

import httpx
import srt
import webvtt
from websockets.sync.client import connect

from serve_app.protocol.timestamps import WordTimestamp, WordTimings
from tests.unit.test_word_timestamps import assert_well_formed
from tests.waiting import wait_for

FRAMES = 10
FORCED = {"min_frames": FRAMES, "max_new_tokens": FRAMES + 1, "seed": 7}
SECONDS = FRAMES / 12.5
TEXT = "Hello world, the total is $1,299.99 at 13:45. 你好！"


def speech(http: httpx.Client, **body) -> httpx.Response:
    return http.post("/v1/audio/speech", json={
        "model": "tts-1", "voice": "alloy", "response_format": "pcm", "input": TEXT,
        "language": "en", "timestamps": "word", **FORCED, **body})


def test_whole_and_streamed_answers_carry_the_aligners_words(http):
    whole = speech(http)
    assert whole.status_code == 200, whole.text
    body = whole.json()
    assert body["source"] == "aligner"
    duration = len(base64.b64decode(body["audio"])) / 2 / 24000
    assert abs(duration - SECONDS) < 0.01
    timings = WordTimings.model_validate(body)
    assert_well_formed(timings, TEXT, duration)

    streamed = speech(http, stream_format="sse")
    assert streamed.status_code == 200, streamed.text
    events = [json.loads(line[6:]) for line in streamed.text.splitlines()
              if line.startswith("data: ")]
    assert [e["type"] for e in events][-2:] == ["speech.alignment", "speech.audio.done"]
    alignment = WordTimings.model_validate(events[-2])
    assert alignment.source == "aligner"
    assert_well_formed(alignment, TEXT, SECONDS)
    assert [(w.word, w.char_start, w.char_end) for w in alignment.words] == \
        [(w.word, w.char_start, w.char_end) for w in timings.words]


def test_a_session_sends_words_after_each_sentences_audio(graph):
    url = graph.base_url.replace("http", "ws", 1) + "/v1/audio/speech/stream"
    texts = ["First sentence here. ", "And the second one!"]
    with connect(url, additional_headers=graph.auth, open_timeout=60) as ws:
        ws.send(json.dumps({"type": "session", "voice": "alloy", "timestamps": "word",
                            **FORCED}))
        for text in texts:
            ws.send(json.dumps({"type": "text", "text": text}))
        ws.send(json.dumps({"type": "close"}))
        events = []
        while True:
            message = ws.recv(timeout=120)
            if isinstance(message, bytes):
                continue
            event = json.loads(message)
            events.append(event)
            if event["type"] in ("done", "error"):
                break
    assert events[-1]["type"] == "done", events[-1]
    words_events = [e for e in events if e["type"] == "words"]
    assert [e["sentence"] for e in words_events] == [0, 1]
    for e in words_events:  # after the last audio of its sentence
        before = events[:events.index(e)]
        assert [a for a in before if a["type"] == "audio.span"][-1]["sentence"] == e["sentence"]
        assert e["source"] == "aligner"
    words = [WordTimestamp.model_validate(w) for e in words_events for w in e["words"]]
    assert_well_formed(WordTimings(words=words, source="aligner"), "".join(texts),
                       events[-1]["usage"]["audio_seconds"])


def test_a_jobs_captions_parse_as_webvtt_and_srt(http):
    text = " ".join(f"Sentence number {i} of the captioned job." for i in range(6))
    r = http.post("/v1/jobs", json={"input": text, "voice": "alloy", "seed": 4,
                                    "max_new_tokens": 12, "response_format": "wav"})
    assert r.status_code == 202, r.text
    job_id = r.json()["id"]
    job = wait_for(lambda: (j := http.get(f"/v1/jobs/{job_id}").json())["status"] in (
        "succeeded", "failed") and j, timeout=240, every=0.5)
    assert job and job["status"] == "succeeded", job
    vtt = http.get(f"/v1/jobs/{job_id}/captions.vtt", params={"max_chars": 24})
    assert vtt.status_code == 200 and vtt.headers["content-type"].startswith("text/vtt")
    cues = webvtt.from_buffer(io.StringIO(vtt.text)).captions
    subs = list(srt.parse(http.get(f"/v1/jobs/{job_id}/captions.srt",
                                   params={"max_chars": 24}).text))
    assert [c.text for c in cues] == [s.content for s in subs]
    shown = " ".join(c.text.replace("\n", " ") for c in cues)
    at = 0
    for word in re.findall(r"\w+", text):  # every word, in order
        at = shown.index(word, at) + len(word)
    last = 0.0
    for c in cues:
        start, end = c.start_time.in_milliseconds() / 1000, c.end_time.in_milliseconds() / 1000
        assert last - 1e-3 <= start < end <= job["audio_seconds"] + 1e-3
        assert all(len(line) <= 24 for line in c.lines)
        last = end


def test_captions_of_a_job_without_timestamps_are_a_404_saying_so(http):
    r = http.post("/v1/jobs", json={"input": "No captions.", "voice": "alloy",
                                    "max_new_tokens": 6, "timestamps": "none"})
    job_id = r.json()["id"]
    assert wait_for(lambda: http.get(f"/v1/jobs/{job_id}").json()["status"] == "succeeded",
                    timeout=240, every=0.5)
    missing = http.get(f"/v1/jobs/{job_id}/captions.srt")
    assert missing.status_code == 404 and "timestamps 'word'" in missing.json()["error"]["message"]


def test_the_handle_api_returns_the_words_with_the_audio(graph):
    from ray import serve

    from serve_app.protocol.speech import CustomVoiceInput

    ingress = serve.get_app_handle(graph.app_name)
    out = ingress.custom_voice.remote(CustomVoiceInput(
        text=TEXT, speaker="Ryan", language="en", timestamps="word", **FORCED)).result(timeout_s=120)
    assert out.timings is not None and out.timings.source == "aligner"
    assert_well_formed(out.timings, TEXT, out.duration_seconds)
