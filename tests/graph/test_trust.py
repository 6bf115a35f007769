"""What a new user and a hostile client meet in their first hour (issue 8), pinned through the
real graph over HTTP: saved voices that stream, a result cache private to each tenant, error
messages without internals, blank or oversized fields refused by name, one upload limit for
every encoding, one error envelope everywhere, strict integer fields."""

from __future__ import annotations

import base64
import io
import json
import re
import uuid

import httpx
import numpy as np
import openai
import pytest
import soundfile as sf

from tests.graph.tenants import as_tenant, create_tenant_key, save_clone_voice, unique_name
from tests.samples import wav_bytes

#: What must never reach a client: Ray's remote traceback and what it carries.
INTERNALS = re.compile(r"Traceback|\x1b\[|pid=|actor_id|ray::|ServeReplica|\.py\b|/work/|ip=")


@pytest.fixture(scope="module")
def key_a(graph) -> str:
    return create_tenant_key(graph.base_url, graph.admin_token, unique_name("trust-a"))


@pytest.fixture(scope="module")
def key_b(graph) -> str:
    return create_tenant_key(graph.base_url, graph.admin_token, unique_name("trust-b"))


def _sse(raw: str) -> list[dict]:
    return [json.loads(line[6:]) for line in raw.splitlines() if line.startswith("data: ")]


def _assert_clean_error(r: httpx.Response, status: int | tuple[int, ...], param: str | None = None):
    statuses = status if isinstance(status, tuple) else (status,)
    assert r.status_code in statuses, r.text
    error = r.json()["error"]
    assert not INTERNALS.search(error["message"]), error["message"]
    assert set(error) >= {"code", "message", "param", "type", "request_id"}
    if param is not None:
        assert error["param"] == param, error
    return error


@pytest.fixture(scope="module")
def narrator(graph, key_a) -> tuple[str, str]:
    """Tenant A's saved voice: (id, name)."""
    name = unique_name("narrator")
    return save_clone_voice(graph, key_a, name)["id"], name


# ---------------------------------------------------------------- 2. saved voices stream
@pytest.mark.parametrize("by", ["id", "name"])
def test_a_saved_voice_streams_as_chunked_audio_through_the_openai_sdk(graph, key_a, narrator, by):
    voice = narrator[0] if by == "id" else narrator[1]
    client = openai.OpenAI(base_url=f"{graph.base_url}/v1", api_key=key_a, max_retries=0)
    with client.audio.speech.with_streaming_response.create(
            model="tts-1", voice=voice, input="A saved voice, streamed.", response_format="pcm",
            extra_body={"stream_format": "audio", "seed": 3}) as response:
        assert response.status_code == 200
        pieces = [p for p in response.iter_bytes() if p]
    audio = np.frombuffer(b"".join(pieces), "<i2")
    assert audio.size > 0 and audio.size % 1920 == 0  # whole 80 ms frames at 24 kHz


def test_a_saved_voice_streams_as_sse_and_is_metered_as_voice_clone(graph, key_a, narrator):
    with as_tenant(graph, key_a) as http:
        before = http.get("/v1/usage", params={"period": "day"}).json()
        r = http.post("/v1/audio/speech", json={"model": "tts-1", "voice": narrator[0],
                                                "input": "Events.", "response_format": "pcm",
                                                "stream_format": "sse", "seed": 4})
        assert r.status_code == 200, r.text
        events = _sse(r.text)
        assert events[-1]["type"] == "speech.audio.done", events[-1]
        assert {e["type"] for e in events[:-1]} == {"speech.audio.delta"}
        for _ in range(100):  # usage is written right after the stream ends
            after = http.get("/v1/usage", params={"period": "day"}).json()
            if after["requests"] > before["requests"]:
                break
        clone = after["by_model"].get("VoiceClone", {})
        assert clone.get("characters", 0) >= before["by_model"].get("VoiceClone", {}).get(
            "characters", 0) + len("Events.")


# --------------------------------------------------------------- 3. a cache per tenant
def test_the_result_cache_never_serves_one_tenant_anothers_audio(graph, key_a, key_b):
    body = {"text": f"Private words {uuid.uuid4().hex[:8]}.", "speaker": "Ryan", "seed": 11}
    with as_tenant(graph, key_a) as a, as_tenant(graph, key_b) as b:
        first = a.post("/api/tts/synthesize", json=body).json()
        assert first["success"] is True and first["audio_url"], first
        assert a.get(first["audio_url"]).status_code == 200  # the owner can fetch it
        stolen = b.get(first["audio_url"])
        assert stolen.status_code == 404 and stolen.json()["success"] is False
        again_b = b.post("/api/tts/synthesize", json=body).json()
        assert again_b["message"] == "ok"  # a miss: B learns nothing about what A said
        assert again_b["audio_url"] != first["audio_url"]
        again_a = a.post("/api/tts/synthesize", json=body).json()
        assert again_a["message"] == "cached"
        speech = {"model": "tts-1", "voice": "ryan", "input": body["text"], "seed": 11}
        assert a.post("/v1/audio/speech", json=speech).headers["X-Cache"] == "miss"
        assert a.post("/v1/audio/speech", json=speech).headers["X-Cache"] == "hit"
        assert b.post("/v1/audio/speech", json=speech).headers["X-Cache"] == "miss"


# ------------------------------------------------------- 4. no internals in a message
MALFORMED = [
    b"", b"not audio at all", b"RIFF\x00\x00\x00\x00WAVEfmt ", b"ID3\x03\x00\x00\x00" + b"\xff" * 64,
    b"OggS" + b"\x00" * 60, b"fLaC" + bytes(range(40)), b"\x00" * 4096,
    wav_bytes(2.0)[:60], b"\xff\xfb\x90\x00" * 100,
]


@pytest.mark.parametrize("index", range(len(MALFORMED)))
def test_malformed_uploads_get_a_clean_4xx_on_clone_and_saved_voices(graph, key_a, index):
    data = MALFORMED[index]
    data_url = "data:audio/wav;base64," + base64.b64encode(data).decode()
    with as_tenant(graph, key_a) as http:
        for r in (
            http.post("/v1/audio/clone", data={"input": "Hi.", "x_vector_only": "true"},
                      files={"reference_audio": ("x.wav", data, "audio/wav")}),
            http.post("/v1/audio/clone", json={"input": "Hi.", "x_vector_only": True,
                                               "reference_audio": data_url}),
            http.post("/v1/voices", data={"name": unique_name("bad"), "consent": "true",
                                          "x_vector_only": "true"},
                      files={"reference_audio": ("x.wav", data, "audio/wav")}),
            http.post("/v1/voices", json={"name": unique_name("bad"), "consent": True,
                                          "x_vector_only": True, "reference_audio": data_url}),
        ):
            _assert_clean_error(r, (413, 415, 422))


def test_designing_a_voice_from_a_blank_sample_is_a_clean_422(graph, key_a):
    with as_tenant(graph, key_a) as http:
        r = http.post("/v1/voices", json={"name": unique_name("blank"), "description": "Warm.",
                                          "sample_text": "   \n\t "})
        _assert_clean_error(r, 422, "sample_text")


# ------------------------------------------------------------ 6. blank text, bad period
@pytest.mark.parametrize("path,body,param", [
    ("/v1/audio/speech", {"model": "tts-1", "voice": "alloy", "input": " \n\t"}, "input"),
    ("/api/tts/synthesize", {"text": "   ", "speaker": "Vivian"}, "text"),
    ("/v1/audio/design", {"input": "  ", "description": "A calm voice."}, "input"),
    ("/v1/jobs", {"input": "\n\n  ", "voice": "alloy"}, "input"),
])
def test_whitespace_only_text_is_a_422_naming_the_field(http, path, body, param):
    error = _assert_clean_error(http.post(path, json=body), 422, param)
    assert "whitespace" in error["message"]


def test_jobs_of_blank_text_are_never_created(http):
    before = len(http.get("/v1/jobs").json()["data"])
    http.post("/v1/jobs", json={"input": "   ", "voice": "alloy"})
    assert len(http.get("/v1/jobs").json()["data"]) == before


@pytest.mark.parametrize("period", ["9999-12-31", "9999-12", "0000-01-01", "2026-13", "soon"])
def test_a_usage_period_out_of_range_is_a_422_naming_period(http, period):
    error = _assert_clean_error(http.get("/v1/usage", params={"period": period}), 422, "period")
    assert "synthesize" not in error["message"]


# ------------------------------------------------- 7. instructions and descriptions
def test_instructions_and_descriptions_longer_than_the_limit_are_refused(http):
    long = "a slow, warm voice " * 200  # 3,800 characters; the limit is 1,000
    cases = [
        ("/v1/audio/speech", {"model": "tts-1", "voice": "alloy", "input": "Hi.",
                              "instructions": long}, "instructions"),
        ("/v1/audio/speech", {"model": "VoiceDesign", "voice": "alloy", "input": "Hi.",
                              "instructions": long}, "instructions"),
        ("/api/tts/synthesize", {"text": "Hi.", "speaker": "Vivian", "instruct": long}, "instruct"),
        ("/v1/audio/design", {"input": "Hi.", "description": long}, "description"),
        ("/v1/jobs", {"input": "Hi.", "voice": "alloy", "instructions": long}, "instructions"),
        ("/v1/jobs", {"input": "Hi.", "model": "VoiceDesign", "description": long}, "description"),
        ("/v1/voices", {"name": unique_name("long"), "description": long}, "description"),
    ]
    for path, body, param in cases:
        error = _assert_clean_error(http.post(path, json=body), 422, param)
        assert "1000" in error["message"], error


# ---------------------------------------------------------- 9. one upload size limit
def _long_wav(nbytes: int) -> bytes:
    """A valid 16 kHz mono WAV of about `nbytes` bytes."""
    samples = np.zeros(nbytes // 2, dtype=np.int16)
    buf = io.BytesIO()
    sf.write(buf, samples, 16000, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def test_the_upload_limit_is_the_decoded_size_whatever_the_encoding(http):
    limit = 10 * 1024 * 1024  # audio.max_upload_bytes of the CPU profile
    under, over = _long_wav(9 * 1024 * 1024), _long_wav(limit + 64 * 1024)
    for audio, refused in ((under, False), (over, True)):
        url = "data:audio/wav;base64," + base64.b64encode(audio).decode()
        multipart = http.post("/v1/audio/clone", data={"input": "Hi.", "x_vector_only": "true"},
                              files={"reference_audio": ("a.wav", audio, "audio/wav")})
        data_url = http.post("/v1/audio/clone", json={"input": "Hi.", "x_vector_only": True,
                                                      "reference_audio": url})
        for r in (multipart, data_url):
            if refused:
                _assert_clean_error(r, 413, "reference_audio")
            else:  # not refused for its size (4.7 minutes of audio: too long to clone from)
                error = _assert_clean_error(r, 422)
                assert error["code"] == "audio_too_long", error


def test_a_chunked_upload_without_length_is_cut_off_at_the_limit(http):
    sent = 0

    def body():
        nonlocal sent
        boundary_head = (b"--b\r\nContent-Disposition: form-data; name=\"reference_audio\"; "
                         b"filename=\"a.wav\"\r\nContent-Type: audio/wav\r\n\r\n")
        yield boundary_head
        for _ in range(60):  # 60 MiB, never all needed
            sent += 1
            yield b"\x00" * (1024 * 1024)
        yield b"\r\n--b--\r\n"

    r = http.post("/v1/audio/clone", content=body(),
                  headers={"Content-Type": "multipart/form-data; boundary=b"})
    _assert_clean_error(r, 413, "reference_audio")


# ------------------------------------------------- 10. one envelope, strict integers
def test_unknown_routes_and_methods_answer_in_the_error_envelope(http):
    missing = _assert_clean_error(http.get("/v1/no-such-thing"), 404)
    assert missing["code"] == "not_found" and "detail" not in http.get("/v1/nope").json()
    method = _assert_clean_error(http.delete("/v1/models"), 405)
    assert method["code"] == "method_not_allowed"
    seed = http.get("/api/nothing-here")
    assert seed.status_code == 404 and seed.json()["success"] is False


@pytest.mark.parametrize("seed", ["7", True, False, 7.5, -1])
def test_seed_must_be_a_plain_integer(http, seed):
    for path, body in (("/v1/audio/speech", {"model": "tts-1", "voice": "alloy", "input": "Hi."}),
                       ("/api/tts/synthesize", {"text": "Hi.", "speaker": "Vivian"}),
                       ("/v1/audio/design", {"input": "Hi.", "description": "Calm."}),
                       ("/v1/jobs", {"input": "Hi.", "voice": "alloy"})):
        _assert_clean_error(http.post(path, json={**body, "seed": seed}), 422, "seed")


def test_a_form_seed_is_read_as_the_integer_it_spells(http):
    ok = http.post("/v1/audio/clone", data={"input": "Hi.", "x_vector_only": "true", "seed": "7",
                                            "max_new_tokens": "8"},
                   files={"reference_audio": ("a.wav", wav_bytes(2.0), "audio/wav")})
    assert ok.status_code == 200, ok.text
    bad = http.post("/v1/audio/clone", data={"input": "Hi.", "x_vector_only": "true",
                                             "seed": "seven"},
                    files={"reference_audio": ("a.wav", wav_bytes(2.0), "audio/wav")})
    _assert_clean_error(bad, 422, "seed")
