"""Voice design and voice cloning endpoints, and every way an upload can be refused."""

from __future__ import annotations

import base64
import io

import soundfile as sf

from deployments.audio import encode
from tests.samples import tone, wav_bytes


def clone_form(http, audio: bytes, filename: str = "ref.wav", **fields):
    data = {"input": "Cloned voice speaking.", "ref_text": "Reference words here.", **fields}
    return http.post("/v1/audio/clone", data=data, files={"reference_audio": (filename, audio)})


def test_voice_design_returns_audio_in_the_requested_format(http):
    response = http.post("/v1/audio/design", json={
        "input": "A designed voice.", "description": "A warm, low female voice.",
        "language": "en", "response_format": "flac", "seed": 4})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "audio/flac"
    audio, rate = sf.read(io.BytesIO(response.content))
    assert rate == 24000 and len(audio) > 0
    assert abs(len(audio) / rate - float(response.headers["X-Audio-Duration"])) < 1e-3


def test_voice_design_without_description_is_422(http):
    response = http.post("/v1/audio/design", json={"input": "x", "description": ""})
    assert response.status_code == 422
    assert response.json()["error"]["param"] == "description"


def test_voice_design_unknown_field_is_422_naming_it(http):
    response = http.post("/v1/audio/design", json={"input": "x", "description": "y", "colour": 1})
    assert response.status_code == 422
    assert response.json()["error"]["param"] == "colour"


def test_clone_icl_from_multipart_wav(http):
    response = clone_form(http, wav_bytes(3.0), seed=1)
    assert response.status_code == 200, response.text
    audio, rate = sf.read(io.BytesIO(response.content))
    assert rate == 24000 and len(audio) > 0


def test_clone_x_vector_only_from_json_data_url_mp3(http):
    mp3 = encode(tone(3.0, 24000), 24000, "mp3")
    response = http.post("/v1/audio/clone", json={
        "input": "Cloned from an embedding.", "x_vector_only": True, "response_format": "mp3",
        "reference_audio": "data:audio/mpeg;base64," + base64.b64encode(mp3).decode()})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "audio/mpeg"


def test_clone_icl_without_ref_text_is_422(http):
    response = clone_form(http, wav_bytes(3.0), ref_text="")
    assert response.status_code == 422
    assert response.json()["error"]["param"] == "ref_text"


def test_clone_garbage_audio_is_415(http):
    response = clone_form(http, b"this is not audio at all" * 100, filename="ref.wav")
    assert response.status_code == 415
    assert response.json()["error"]["param"] == "reference_audio"


def test_clone_too_short_audio_is_422(http):
    response = clone_form(http, wav_bytes(0.5))
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "audio_too_short"


def test_clone_too_long_audio_is_422(http):
    response = clone_form(http, wav_bytes(61.0, rate=8000))
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "audio_too_long"


def test_clone_oversize_upload_is_413(http):
    response = clone_form(http, b"\0" * (10 * 1024 * 1024 + 1))
    assert response.status_code == 413
    assert response.json()["error"]["param"] == "reference_audio"


def test_clone_url_instead_of_audio_is_refused_never_fetched(http):
    response = http.post("/v1/audio/clone", json={
        "input": "x", "x_vector_only": True, "reference_audio": "http://127.0.0.1:1/ref.wav"})
    assert response.status_code == 422
    assert response.json()["error"]["param"] == "reference_audio"


def test_clone_with_unsupported_content_type_is_415(http):
    response = http.post("/v1/audio/clone", content=b"x", headers={"content-type": "text/plain"})
    assert response.status_code == 415
