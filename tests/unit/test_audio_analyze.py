"""POST /v1/audio/analyze: the speech a recording holds, by the detector that screens clone
references (silero-vad on the AudioProcessor), beside the `clone.min_speech_s` a clone needs;
the playground's recorder shows it while recording. Through the real routes, SynthesisService
and the AudioProcessor's own class, without Ray."""

from __future__ import annotations

import pytest

from tests.samples import wav_bytes
from tests.speech import SENTENCES, require_speech, speak
from tests.unit.test_output_marking import client


@pytest.fixture(scope="module")
def http():
    with client() as c:
        yield c


def test_real_speech_is_measured_and_enough(http):
    require_speech()
    r = http.post("/v1/audio/analyze", content=speak("kal", SENTENCES[0]),
                  headers={"Content-Type": "audio/wav"})
    assert r.status_code == 200, r.text
    found = r.json()
    assert found["object"] == "audio.analysis"
    assert 1.5 <= found["speech_seconds"] <= found["duration_seconds"]
    assert found["min_speech_seconds"] == 1.0 and found["enough_speech"] is True


def test_a_tone_holds_no_speech_however_long(http):
    r = http.post("/v1/audio/analyze", files={"file": ("tone.wav", wav_bytes(3.0))})
    assert r.status_code == 200, r.text
    found = r.json()
    assert found["duration_seconds"] == pytest.approx(3.0, abs=0.05)
    assert found["speech_seconds"] < 0.5 and found["enough_speech"] is False


def test_a_short_clip_is_measured_not_refused(http):
    """While recording, the first second is analyzed too: no minimum length applies."""
    require_speech()
    r = http.post("/v1/audio/analyze", content=speak("kal", "Hi."))
    assert r.status_code == 200, r.text
    assert r.json()["speech_seconds"] < 1.0 and r.json()["enough_speech"] is False


def test_errors_name_the_file(http):
    empty = http.post("/v1/audio/analyze", content=b"")
    assert empty.status_code == 422 and empty.json()["error"]["param"] == "file"
    garbage = http.post("/v1/audio/analyze", content=b"not audio at all" * 10)
    assert garbage.status_code == 415, garbage.text
    assert garbage.json()["error"]["code"] == "audio_unreadable"
    assert garbage.json()["error"]["param"] == "file"
    no_part = http.post("/v1/audio/analyze", files={"other": ("x.wav", wav_bytes(1.0))})
    assert no_part.status_code == 422 and no_part.json()["error"]["param"] == "file"
