"""Normalization and SSML through the running graph (tiny random-weight models: lengths are
forced with min_frames / max_new_tokens, never speech content)."""

from __future__ import annotations

import base64
import io

import numpy as np
import soundfile as sf

from tests.graph.tenants import create_tenant_key, unique_name

FRAMES = 5  # per model request: min_frames == the frame cap (max_new_tokens - 1)
SAMPLES_PER_FRAME = 1920  # 24 kHz / 12.5 frames per second
FORCED = {"min_frames": FRAMES, "max_new_tokens": FRAMES + 1, "seed": 3}


def speech(http, text: str, **body):
    return http.post("/v1/audio/speech", json={"model": "tts-1", "voice": "alloy",
                                               "response_format": "pcm", "input": text,
                                               "language": "en", **FORCED, **body})


def test_a_normalized_request_is_what_the_model_reads(http):
    def seed(text: str, normalize: bool) -> dict:
        response = http.post("/api/tts/synthesize", json={
            "text": text, "language": "en", "speaker": "Ryan", "seed": 91,
            "normalize": normalize})
        assert response.status_code == 200, response.text
        return response.json()

    first = seed("I have 3 cats.", True)
    # the model read the words: the same words sent as they are hit the same cached result
    again = seed("I have three cats.", False)
    assert again["message"] == "cached" and again["audio_base64"] == first["audio_base64"]
    assert seed("I have 3 cats.", False)["message"] == "ok"  # the digit as written: new


def test_an_ssml_break_adds_its_silence_whole_and_streamed(http):
    doc = '<speak>One.<break time="1s"/>Two.</speak>'
    part = FRAMES * SAMPLES_PER_FRAME
    whole = speech(http, doc, input_format="ssml")
    assert whole.status_code == 200, whole.text
    audio = np.frombuffer(whole.content, dtype="<i2")
    assert len(audio) == 2 * part + 24000
    assert not audio[part:part + 24000].any()  # the break is silence
    streamed = speech(http, doc, input_format="ssml", stream_format="audio")
    assert streamed.status_code == 200, streamed.text
    streamed_audio = np.frombuffer(streamed.content, dtype="<i2")
    assert len(streamed_audio) == len(audio)  # the same parts and break, as they are made
    assert not streamed_audio[part:part + 24000].any()


def test_ssml_on_the_seed_route_returns_the_joined_audio(http):
    response = http.post("/api/tts/synthesize", json={
        "text": '<speak><break time="500ms"/>Hi.</speak>', "input_format": "ssml",
        "language": "en", "speaker": "Ryan", "seed": 5})
    assert response.status_code == 200, response.text
    audio, rate = sf.read(io.BytesIO(base64.b64decode(response.json()["audio_base64"])))
    # the seed route takes no frame limits: the model's part is as long as it came out
    assert rate == 24000 and len(audio) > 12000 and not audio[:12000].any()


def test_malformed_ssml_is_a_422_naming_the_element_and_offset(http):
    response = speech(http, '<speak>Hi <audio src="x"/></speak>', input_format="ssml")
    assert response.status_code == 422
    error = response.json()["error"]
    # named as OpenAI's field: `input`
    assert error["param"] == "input" and "<audio>" in error["message"]
    assert error["message"].startswith("input is not valid SSML")
    assert "at character 10" in error["message"]


def test_a_pronunciation_dictionary_is_what_the_model_reads_and_only_its_tenants(graph, http):
    r = http.post("/v1/pronunciation-dictionaries", json={
        "name": "graph", "entries": [{"grapheme": "Qwen", "alias": "chwen"}]})
    assert r.status_code == 201, r.text
    pdict = r.json()["id"]
    first = speech(http, "Qwen speaks.", pronunciation_dictionaries=[pdict], seed=17)
    assert first.status_code == 200, first.text
    # the model read the alias: the alias sent as the text hits the same cached result
    again = speech(http, "chwen speaks.", pronunciation_dictionaries=[], seed=17)
    assert again.headers["X-Cache"] == "hit" and again.content == first.content
    other = create_tenant_key(graph.base_url, graph.admin_token, unique_name("dict-other"))
    theirs = {"Authorization": f"Bearer {other}"}
    r = http.post("/v1/audio/speech", headers=theirs, json={
        "model": "tts-1", "voice": "alloy", "input": "Qwen.", "response_format": "pcm",
        "pronunciation_dictionaries": [pdict], **FORCED})
    assert r.status_code == 404 and r.json()["error"]["param"] == "pronunciation_dictionaries"
    assert http.get(f"/v1/pronunciation-dictionaries/{pdict}", headers=theirs).status_code == 404
