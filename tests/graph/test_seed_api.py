"""The seed service's API, field for field, through real HTTP on the running graph."""

from __future__ import annotations

import base64
import io

import soundfile as sf

SEED_TEXT = "其实我真的有发现，我是一个特别善于观察别人情绪的人。"
PRESETS = {"Vivian", "Serena", "Uncle_Fu", "Dylan", "Eric", "Ryan", "Aiden", "Ono_Anna", "Sohee"}


def synthesize(http, **body):
    return http.post("/api/tts/synthesize", json={"text": SEED_TEXT, "language": "zh",
                                                  "speaker": "Vivian", **body})


def test_seed_curl_example_returns_24khz_wav_matching_reported_duration(http):
    response = synthesize(http)
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"success", "audio_base64", "audio_url", "duration", "sample_rate",
                         "processing_time", "message"}
    assert body["success"] is True and body["sample_rate"] == 24000
    audio, rate = sf.read(io.BytesIO(base64.b64decode(body["audio_base64"])))
    assert rate == 24000 and audio.ndim == 1 and len(audio) > 0
    assert abs(len(audio) / rate - body["duration"]) < 1e-3
    assert body["processing_time"] >= 0
    assert response.headers["X-Request-ID"]


def test_audio_url_serves_the_same_audio(http):
    body = synthesize(http, seed=11).json()
    fetched = http.get(body["audio_url"])
    assert fetched.status_code == 200
    assert fetched.content == base64.b64decode(body["audio_base64"])
    assert fetched.headers["content-type"] == "audio/wav"


def test_repeated_request_is_served_from_the_cache(http):
    first = synthesize(http, seed=12).json()
    second = synthesize(http, seed=12).json()
    assert second["message"] == "cached"
    assert second["audio_base64"] == first["audio_base64"]


def test_speaker_and_language_are_case_insensitive_and_accept_model_names(http):
    response = synthesize(http, speaker="vivian", language="Chinese", seed=1)
    assert response.status_code == 200, response.text


def test_speed_two_halves_the_duration(http):
    normal = synthesize(http, seed=21).json()["duration"]
    fast = synthesize(http, seed=21, speed=2.0).json()["duration"]
    assert abs(fast - normal / 2) <= 0.05 * normal / 2 + 0.01


def test_pitch_keeps_the_duration_and_changes_the_audio(http):
    normal = synthesize(http, seed=22).json()
    shifted = synthesize(http, seed=22, pitch=1.5).json()
    assert abs(shifted["duration"] - normal["duration"]) < 0.01
    assert shifted["audio_base64"] != normal["audio_base64"]


def test_unknown_speaker_lists_valid_speakers(http):
    response = synthesize(http, speaker="Nobody")
    assert response.status_code == 422
    body = response.json()
    assert body["success"] is False
    assert body["error"]["param"] == "speaker"
    for name in PRESETS:
        assert name in body["error"]["message"]


def test_unknown_language_lists_valid_languages(http):
    response = synthesize(http, language="xx")
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["param"] == "language"
    for code in ("zh", "en", "ja", "ko", "de", "fr", "ru", "pt", "es", "it", "auto"):
        assert code in error["message"]


def test_empty_text_is_422_naming_text(http):
    response = synthesize(http, text="")
    assert response.status_code == 422
    assert response.json()["error"]["param"] == "text"


def test_over_long_text_is_422_naming_text_and_limit(http):
    response = synthesize(http, text="a" * 5001)
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["param"] == "text" and "5000" in error["message"]


def test_speed_out_of_range_is_422_naming_speed(http):
    response = synthesize(http, speed=3.0)
    assert response.status_code == 422
    assert response.json()["error"]["param"] == "speed"


# enable_streaming=true streams for real: see tests/graph/test_streaming.py


def test_health_reports_seed_fields_and_every_deployment(http):
    body = http.get("/api/health").json()
    assert body["status"] == "healthy" and body["model_loaded"] is True
    assert body["device"] == "cpu"
    assert isinstance(body["concurrent_tasks"], int) and body["uptime_seconds"] > 0
    assert set(body["deployments"]) >= {"CustomVoice", "VoiceDesign", "VoiceClone"}


def test_voices_lists_the_nine_presets_with_metadata(http):
    voices = http.get("/api/voices").json()["voices"]
    assert {v["id"] for v in voices} == PRESETS
    for voice in voices:
        assert set(voice) == {"id", "name", "language", "gender", "description"}
        assert voice["description"] and voice["gender"] in ("female", "male")
    assert next(v for v in voices if v["id"] == "Sohee")["language"] == "ko"


def test_root_and_openapi_and_docs(http):
    assert "POST /api/tts/synthesize" in http.get("/").json()["endpoints"]
    spec = http.get("/openapi.json").json()
    assert "/api/tts/synthesize" in spec["paths"] and "/v1/audio/speech" in spec["paths"]
    assert http.get("/docs").status_code == 200


def test_request_id_is_echoed(http):
    response = http.get("/api/health", headers={"X-Request-ID": "abc-123"})
    assert response.headers["X-Request-ID"] == "abc-123"
