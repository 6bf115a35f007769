"""Word timestamps (serve_app.synthesis.word_timing, `timestamps: "word"`): the words are those
of the text as sent, in order, each with its characters there, times that never go back and
stay inside the audio, whatever normalization or SSML made of the text and whatever an
aligner answers; the same words whole and streamed (SSE: a speech.alignment event after the
audio). Through the real routes and SynthesisService, without Ray."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import random
import re
import wave

import numpy as np
import pytest
from fastapi.testclient import TestClient

from deployments.audio_processor import AudioProcessor
from deployments.engine.types import ModelInfo, ModelKind
from serve_app.app.args import AppArgs
from serve_app.app.http_app import create_http_app
from serve_app.edge.api_errors import ApiError
from serve_app.protocol.session_api import SessionAudio, SessionSettings, SessionWords, TextDelta
from serve_app.protocol.speech import CustomVoiceInput
from serve_app.protocol.timestamps import WordTimings
from serve_app.routes.common import ReplicaServices
from serve_app.sessions.speech_session import SpeechSession
from serve_app.synthesis.model_call import CallBuilder
from serve_app.synthesis.synthesis_service import SynthesisService
from serve_app.synthesis.voice_selector import VoiceSelector
from serve_app.synthesis.word_timing import WordTimer, repair
from tests.fake_handles import FakeHandle, FakeModel

RATE = 24_000
INFO = ModelInfo(
    kind=ModelKind.CUSTOM_VOICE, model="tiny", speakers=("vivian", "ryan"), dialect_speakers={},
    languages=("auto", "chinese", "english"), sample_rate=RATE, device="cpu", dtype="float32",
    model_size="tiny",
)
SECONDS = 2.0
AUDIO = (0.2 * np.sin(2 * np.pi * 220 * np.arange(int(RATE * SECONDS)) / RATE)).astype(np.float32)
#: The words of a text as its reader sees them (what the timestamps must cover, in order).
USER_WORD = re.compile(r"[\u4e00-\u9fff]|[^\W_\u4e00-\u9fff]+")


def assert_well_formed(timings: WordTimings, text: str, duration: float) -> None:
    """Monotonic, inside the audio, each word its own characters of `text`, and every word of
    `text` inside one of them, in order."""
    words = timings.words
    assert words, "no words"
    last_end = 0.0
    for w in words:
        assert 0.0 <= w.start <= w.end <= duration + 1e-6, w
        assert w.start >= last_end - 1e-6, (w, last_end)
        last_end = w.end
        assert text[w.char_start:w.char_end] == w.word and w.word
    assert [w.char_start for w in words] == sorted(w.char_start for w in words)
    at = 0
    readable = re.sub(r"<[^>]*>", lambda tag: " " * len(tag.group()), text)  # SSML's markup
    for m in USER_WORD.finditer(readable):
        while at < len(words) and words[at].char_end <= m.start():
            at += 1
        assert at < len(words) and words[at].char_start <= m.start() < words[at].char_end, \
            f"{m.group()!r} at {m.start()} is in no timed word: {words}"


async def _info(_name):
    return INFO


def timings_of(text: str, *, aligner=None, duration=SECONDS, **inp) -> WordTimings:
    async def run():
        call = await CallBuilder(AppArgs(), _info).prepare(
            CustomVoiceInput(text=text, speaker="vivian", **inp))
        audio = np.zeros(int(RATE * duration), dtype=np.float32)
        return await WordTimer(aligner).timings(call, text, audio, RATE,
                                                ssml=inp.get("input_format") == "ssml")
    return asyncio.run(run())


# ------------------------------------------------------------------------------- the words
@pytest.mark.parametrize("text", [
    "Hello there, world.",
    "It costs $1,299.99 on 2026-12-04 at 13:45, about 3 km away.",
    "Dr. Smith paid 50% more.",
    "第3章，你好世界。",
    "Mixed 中文 and English, 2 words.",
])
def test_estimated_words_are_the_users_words_in_order_inside_the_audio(text):
    timings = timings_of(text)
    assert timings.source == "estimate"
    assert_well_formed(timings, text, SECONDS)


def test_a_normalized_number_is_one_word_of_the_users_text():
    timings = timings_of("Pay $5 now.")
    assert [w.word for w in timings.words] == ["Pay", "$5", "now"]
    five = timings.words[1]
    assert five.end - five.start > timings.words[0].end - timings.words[0].start  # "five dollars"


def test_normalize_false_times_the_text_as_written():
    timings = timings_of("Pay $5 now.", normalize=False)
    assert [w.word for w in timings.words] == ["Pay", "5", "now"]


def test_ssml_words_point_into_the_document_and_breaks_are_silence():
    doc = '<speak>One two.<break time="1s"/>Three <sub alias="World Wide Web">WWW</sub>.</speak>'
    timings = timings_of(doc, input_format="ssml", duration=3.0)
    assert [w.word for w in timings.words] == ["One", "two", "Three", "WWW"]
    assert_well_formed(timings, doc, 3.0)
    two, three = timings.words[1], timings.words[2]
    assert three.start - two.end >= 1.0 - 1e-6  # the break's second of silence lies between


class Aligner:
    """An aligner answering like a random-weight checkpoint: times anywhere, in any order."""

    def __init__(self, seed: int):
        self.rng = random.Random(seed)
        self.calls = 0

    async def align(self, audio, sample_rate, words):
        self.calls += 1
        duration = len(audio) / sample_rate
        return [(self.rng.uniform(-1, duration + 1), self.rng.uniform(-1, duration + 1))
                for _ in words]


@pytest.mark.parametrize("seed", range(5))
def test_an_aligners_random_answer_is_repaired_into_well_formed_words(seed):
    text = "It costs $1,299.99 on 2026-12-04, said Dr. Smith."
    aligner = Aligner(seed)
    timings = timings_of(text, aligner=FakeHandle(aligner))
    assert aligner.calls == 1 and timings.source == "aligner"
    assert_well_formed(timings, text, SECONDS)


def test_an_aligner_that_fails_falls_back_to_the_estimate():
    class Broken:
        async def align(self, *_):
            raise RuntimeError("replica died")
    timings = timings_of("Hello world.", aligner=FakeHandle(Broken()))
    assert timings.source == "estimate"
    assert_well_formed(timings, "Hello world.", SECONDS)


def test_repair_clamps_and_orders():
    assert repair([(0.5, 0.2), (0.1, 9.0), (float("nan"), -1.0)], 2.0) == [
        (0.5, 0.5), (0.5, 2.0), (2.0, 2.0)]


# ------------------------------------------------------------------------------ the surfaces


@pytest.fixture(scope="module")
def http():
    args = AppArgs()
    processor = AudioProcessor.func_or_class(args.audio, args.clone)
    svc = SynthesisService(args, {"CustomVoice": FakeHandle(FakeModel(INFO, AUDIO, RATE, frames=25))},
                           FakeHandle(processor))
    with TestClient(create_http_app(ReplicaServices(svc)),
                    raise_server_exceptions=False) as c:
        yield c


TEXT = "Hello world, it is 13:45 and the total is $1,299.99."


def speech(http, **extra):
    return http.post("/v1/audio/speech", json={
        "model": "tts-1", "voice": "ryan", "input": TEXT, "response_format": "wav",
        "timestamps": "word", **extra})


def test_whole_answer_is_json_with_the_audio_and_its_words(http):
    r = speech(http)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/json"
    body = r.json()
    assert body["format"] == "wav" and body["source"] == "estimate"
    with wave.open(io.BytesIO(base64.b64decode(body["audio"]))) as w:
        duration = w.getnframes() / w.getframerate()
    assert duration == pytest.approx(SECONDS)
    assert_well_formed(WordTimings.model_validate(body), TEXT, duration)


def test_without_timestamps_the_answer_is_the_audio_file(http):
    r = speech(http, timestamps="none")
    assert r.status_code == 200 and r.headers["content-type"] == "audio/wav"


def test_speed_scales_the_times_to_the_delivered_audio(http):
    r = speech(http, speed=2.0, response_format="wav")
    body = r.json()
    assert body["duration_seconds"] == pytest.approx(SECONDS / 2, abs=0.01)
    assert_well_formed(WordTimings.model_validate(body), TEXT, body["duration_seconds"])


def test_sse_sends_the_alignment_after_the_audio_and_the_same_words_as_whole(http):
    r = speech(http, stream_format="sse")
    assert r.status_code == 200, r.text
    events = [json.loads(line[6:]) for line in r.text.splitlines() if line.startswith("data: ")]
    kinds = [e["type"] for e in events]
    assert kinds[-2:] == ["speech.alignment", "speech.audio.done"]
    assert set(kinds[:-2]) == {"speech.audio.delta"}
    alignment = WordTimings.model_validate(events[-2])
    assert_well_formed(alignment, TEXT, SECONDS)
    whole = WordTimings.model_validate(speech(http).json())
    assert [(w.word, w.char_start, w.char_end) for w in alignment.words] == \
        [(w.word, w.char_start, w.char_end) for w in whole.words]


def test_raw_audio_streaming_has_no_room_for_words_and_says_so(http):
    r = speech(http, stream_format="audio")
    assert r.status_code == 422 and r.json()["error"]["param"] == "timestamps"
    assert "stream_format 'sse'" in r.json()["error"]["message"]


def test_a_bad_timestamps_value_is_a_422_naming_the_field_and_the_values(http):
    r = speech(http, timestamps="sentence")
    assert r.status_code == 422
    error = r.json()["error"]
    assert error["param"] == "timestamps"
    assert "'none'" in error["message"] and "'word'" in error["message"]


# ------------------------------------------------------------------- the speech session
def session_events(svc, texts, **settings):
    async def run():
        session = SpeechSession(svc, SessionSettings(voice="ryan", timestamps="word",
                                                     **settings), "sess_test",
                                VoiceSelector(svc))
        await session.open()
        return [e async for e in session.run(_messages(texts))]
    return asyncio.run(run())


async def _messages(texts):
    for text in texts:
        yield TextDelta(text=text)


def test_a_session_sends_each_sentences_words_after_its_audio_in_session_time():
    svc = SynthesisService(AppArgs(), {"CustomVoice": FakeHandle(FakeModel(INFO, AUDIO, RATE, frames=25))},
                           FakeHandle(object()))
    texts = ["Hello there, it is 13:45. ", "The total is $5! ", "Bye now."]
    events = session_events(svc, texts)
    full = "".join(texts)
    kinds = [type(e).__name__ for e in events]
    assert kinds.count("SessionWords") == 3 and kinds[-1] == "SessionDone"
    for i, event in enumerate(events):  # each sentence's words come after its audio
        if isinstance(event, SessionWords):
            assert isinstance(events[i - 1], SessionAudio)
            assert events[i - 1].sentence == event.sentence
    words = [w for e in events if isinstance(e, SessionWords) for w in e.words]
    done = events[-1]
    assert_well_formed(WordTimings(words=words, source="estimate"), full,
                       done.usage.audio_seconds)
    first_of_second = next(e for e in events if isinstance(e, SessionWords) and e.sentence == 1)
    assert first_of_second.words[0].start >= SECONDS - 1e-6  # placed after sentence 0's audio


def test_word_timestamps_need_sentence_mode():
    svc = SynthesisService(AppArgs(), {"CustomVoice": FakeHandle(FakeModel(INFO, AUDIO, RATE, frames=25))},
                           FakeHandle(object()))
    with pytest.raises(ApiError) as caught:
        session_events(svc, ["Hi."], mode="incremental")
    assert caught.value.param in ("timestamps", "mode")
