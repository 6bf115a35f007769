"""Output marking through the real graph (configs/cpu-tiny.yaml): the demo profile signs every
non-streamed wav, mp3 and flac output with its DEVELOPMENT C2PA signer (made under the
graph's data directory) on the AudioProcessor, and POST /v1/audio/verify reads the manifest
back across the Ray handles; POST /v1/audio/analyze measures speech there too."""

from __future__ import annotations

import pytest

from deployments.audio.content_credentials.development import SIGNER_NAME
from tests.samples import wav_bytes
from tests.waiting import wait_for

pytestmark = pytest.mark.graph


def speech(http, fmt: str, **extra):
    r = http.post("/v1/audio/speech", json={"model": "tts-1", "voice": "alloy",
                                            "input": "Signed speech.", "response_format": fmt,
                                            **extra})
    assert r.status_code == 200, r.text
    return r


def verify(http, data: bytes) -> dict:
    r = http.post("/v1/audio/verify", content=data,
                  headers={"Content-Type": "application/octet-stream"})
    assert r.status_code == 200, r.text
    return r.json()


@pytest.mark.parametrize("fmt", ["wav", "mp3", "flac"])
def test_the_demo_signs_outputs_with_its_development_signer(http, fmt):
    r = speech(http, fmt)
    found = verify(http, r.content)
    assert found["marked"] and found["mark"]["request_id"] == r.headers["X-AI-Request-Id"]
    c2pa = found["c2pa"]
    assert c2pa["valid"] and c2pa["trusted"] and c2pa["ai_generated"]
    assert c2pa["signer"]["common_name"] == SIGNER_NAME
    generation = c2pa["assertions"]["org.qwen3-tts-serve.generation"]
    assert generation["request_id"] == r.headers["X-AI-Request-Id"]
    assert generation["model_kind"] == "CustomVoice"
    # one bit of the audio flipped, away from the manifest (wav: a RIFF chunk at the end;
    # mp3, flac: an ID3 tag at the start), which a short file's middle byte may fall into
    changed = bytearray(r.content)
    changed[60 if fmt == "wav" else len(changed) - 64] ^= 0x01
    assert verify(http, bytes(changed))["c2pa"]["valid"] is False


def test_opus_and_streams_carry_the_mark_without_a_manifest(http):
    opus = verify(http, speech(http, "opus").content)
    assert opus["marked"] and opus["c2pa"] is None
    streamed = speech(http, "mp3", stream_format="audio")
    assert streamed.headers["X-AI-Generated"] == "true"
    assert verify(http, streamed.content)["c2pa"] is None


def test_analyze_measures_speech_on_the_audio_processor(http):
    r = http.post("/v1/audio/analyze", files={"file": ("tone.wav", wav_bytes(2.0))})
    assert r.status_code == 200, r.text
    found = r.json()
    assert found["duration_seconds"] == pytest.approx(2.0, abs=0.05)
    assert found["speech_seconds"] < 0.5
    assert found["min_speech_seconds"] == 0  # the demo profile does not screen references


def test_an_async_jobs_result_is_signed_with_the_jobs_id(http):
    r = http.post("/v1/jobs", json={"input": "A job, signed.", "voice": "alloy",
                                    "response_format": "flac", "max_new_tokens": 8})
    assert r.status_code == 202, r.text
    job_id = r.json()["id"]
    done = wait_for(lambda: http.get(f"/v1/jobs/{job_id}").json()["status"]
                    in ("succeeded", "failed"), timeout=240, every=0.5)
    assert done and http.get(f"/v1/jobs/{job_id}").json()["status"] == "succeeded"
    found = verify(http, http.get(f"/v1/jobs/{job_id}/audio").content)
    assert found["mark"]["request_id"] == job_id
    assert found["c2pa"]["valid"] and found["c2pa"]["trusted"]
    assert found["c2pa"]["assertions"]["org.qwen3-tts-serve.generation"]["request_id"] == job_id
