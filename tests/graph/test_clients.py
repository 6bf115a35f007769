"""The client matrix (docs/clients.md): each test sends what one client's own source sends and
checks what that client needs back, against the running graph over real HTTP."""

from __future__ import annotations

import io
import time
import uuid

import av
import httpx
import numpy as np
import openai
import pytest

from serve_app.synthesis.catalog import OPENAI_VOICES

pytestmark = pytest.mark.graph

#: Pipecat's VALID_VOICES (src/pipecat/services/openai/tts.py), the only names it sends.
PIPECAT_VOICES = ("alloy", "ash", "ballad", "coral", "echo", "fable", "onyx", "nova", "sage",
                  "shimmer", "verse")
#: Open WebUI's fallback voice list when the server's listing fails: what users type.
OPEN_WEBUI_FALLBACK_VOICES = ("alloy", "echo", "fable", "onyx", "nova", "shimmer")


def decode(data: bytes) -> tuple[str, int, int, float]:
    """(container format, sample rate, channels, seconds) through libav."""
    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.audio[0]
        samples = sum(frame.samples for frame in container.decode(stream))
        return container.format.name, stream.rate, stream.codec_context.channels, samples / stream.rate


@pytest.fixture(scope="module")
def designed_voice(graph) -> dict:
    """A saved voice of the tests' tenant (POST /v1/voices, designed), deleted afterwards."""
    with graph.client() as client:
        r = client.post("/v1/voices", json={"name": f"listing-{uuid.uuid4().hex[:6]}",
                                            "description": "A bright young voice.", "seed": 2})
        assert r.status_code == 201, r.text
        voice = r.json()
        yield voice
        client.delete(f"/v1/voices/{voice['id']}")


# ------------------------------------------------------------------------------ Open WebUI
def test_open_webui_lists_models_without_a_key(graph):
    # get_available_models: requests.get(f"{TTS_OPENAI_API_BASE_URL}/audio/models"), no headers
    r = httpx.get(f"{graph.base_url}/v1/audio/models", timeout=30)
    assert r.status_code == 200, r.text
    ids = [m["id"] for m in r.json().get("models", [])]
    assert "CustomVoice" in ids and "tts-1" in ids


def test_open_webui_lists_voices_as_id_name_objects_without_a_key(graph):
    # get_available_voices: {voice["id"]: voice["name"] for voice in data.get("voices", [])}
    r = httpx.get(f"{graph.base_url}/v1/audio/voices", timeout=30)
    assert r.status_code == 200, r.text
    available = {voice["id"]: voice["name"] for voice in r.json().get("voices", [])}
    assert "Vivian" in available  # a preset, by the display name the API accepts
    assert set(OPEN_WEBUI_FALLBACK_VOICES) <= set(available)
    assert not any(v.startswith("voice_") for v in available)  # no tenant without a key


def test_voice_listing_adds_the_callers_saved_voices(graph, designed_voice):
    with graph.client() as client:
        listed = client.get("/v1/audio/voices", params={"model": "tts-1"}).json()["voices"]
    saved = [v for v in listed if v["kind"] == "saved"]
    assert {"id": designed_voice["id"], "name": designed_voice["name"],
            "kind": "saved"} in saved
    r = httpx.get(f"{graph.base_url}/v1/audio/voices",
                  headers={"Authorization": "Bearer qtts_not-a-key"}, timeout=30)
    assert r.status_code == 401 and r.json()["error"]["code"]


def test_open_webui_speech_without_response_format_is_mp3(graph):
    # speech(): payload {input, voice} from the UI, model set from TTS_MODEL, Bearer key,
    # optional X-OpenWebUI-User-* headers; the answer is cached as <hash>.mp3
    r = httpx.post(f"{graph.base_url}/v1/audio/speech", timeout=120,
                   json={"input": "Hello from Open WebUI.", "voice": "alloy", "model": "tts-1"},
                   headers={"Content-Type": "application/json", **graph.auth,
                            "X-OpenWebUI-User-Name": "Ada", "X-OpenWebUI-User-Id": "u1",
                            "X-OpenWebUI-User-Email": "ada@example.org",
                            "X-OpenWebUI-User-Role": "user"})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "audio/mpeg"
    container, rate, channels, seconds = decode(r.content)
    assert container == "mp3" and seconds > 0


def test_open_webui_reads_the_error_message_of_a_failure(graph):
    # on failure it shows f"External: {res['error']}" from the JSON body
    r = httpx.post(f"{graph.base_url}/v1/audio/speech", timeout=60, headers=graph.auth,
                   json={"input": "x", "voice": "nobody", "model": "tts-1"})
    assert r.status_code == 422
    assert "nobody" in r.json()["error"]["message"]


# ------------------------------------------------------------------------------ SillyTavern
@pytest.mark.parametrize("speed", [0.25, 1, 4])
def test_sillytavern_body_with_its_speed_range_gives_mp3(graph, speed):
    # openai-compatible.js -> its proxy -> provider_endpoint:
    # {model, input, voice, response_format: "mp3", speed} (slider 0.25-4, step 0.05)
    r = httpx.post(f"{graph.base_url}/v1/audio/speech", timeout=120, headers=graph.auth,
                   json={"model": "tts-1", "input": "Greetings, traveller.", "voice": "nova",
                         "response_format": "mp3", "speed": speed})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "audio/mpeg"
    assert decode(r.content)[3] > 0


def test_speed_changes_the_length_as_sillytavern_expects(graph):
    def seconds(speed: float) -> float:
        r = httpx.post(f"{graph.base_url}/v1/audio/speech", timeout=120, headers=graph.auth,
                       json={"model": "tts-1", "input": "One two three four.", "voice": "nova",
                             "response_format": "wav", "speed": speed,
                             "seed": 5, "min_frames": 24, "max_new_tokens": 24})  # extensions
        assert r.status_code == 200, r.text
        return decode(r.content)[3]

    normal, fast, slow = seconds(1), seconds(4), seconds(0.25)
    assert fast < normal * 0.4 and slow > normal * 2.5


# --------------------------------------------------------------------------- Home Assistant
def test_home_assistant_voice_listing_beside_the_speech_url(graph):
    # voice_listing.voices_url_for("{base}/v1/audio/speech") -> "{base}/v1/audio/voices",
    # GET with Bearer, User-Agent, params={"limit": 100}; reads payload["voices"] id/name
    speech_url = f"{graph.base_url}/v1/audio/speech"
    voices_url = speech_url.rsplit("/", 1)[0] + "/voices"
    r = httpx.get(voices_url, params={"limit": 100}, timeout=30,
                  headers={"User-Agent": "HomeAssistant-OpenAI-TTS", **graph.auth})
    assert r.status_code == 200
    options = [{"value": str(v["id"]), "label": str(v.get("name") or v["id"])}
               for v in r.json()["voices"]]
    assert {"value": "alloy", "label": "alloy (Vivian)"} in options


@pytest.mark.parametrize("fmt,content_type", [("mp3", "audio/mpeg"), ("opus", "audio/ogg"),
                                              ("aac", "audio/aac"), ("pcm", "audio/pcm")])
def test_home_assistant_streamed_formats(graph, fmt, content_type):
    # async_get_tts_stream: {model, input, voice, response_format, speed} (+ instructions), read
    # with iter_chunked; its extra_payload merges {"stream_format": "audio"} for a live stream
    payload = {"model": "gpt-4o-mini-tts", "input": "The lights are on.", "voice": "coral",
               "response_format": fmt, "speed": 1.0, "instructions": "Calm and clear.",
               "stream_format": "audio"}
    headers = {"Content-Type": "application/json", "User-Agent": "HomeAssistant-OpenAI-TTS",
               **graph.auth}
    chunks = []
    with httpx.stream("POST", f"{graph.base_url}/v1/audio/speech", json=payload,
                      headers=headers, timeout=60) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].split(";")[0] == content_type
        assert r.headers.get("transfer-encoding") == "chunked"
        chunks = [c for c in r.iter_bytes(4096 if fmt == "opus" else 8192) if c]
    data = b"".join(chunks)
    if fmt == "pcm":
        assert len(data) % 2 == 0 and np.frombuffer(data, "<i2").size > 0
    else:
        assert decode(data)[3] > 0


def test_home_assistant_maps_a_bad_key_to_auth_failed(graph):
    r = httpx.post(f"{graph.base_url}/v1/audio/speech", timeout=30,
                   headers={"Authorization": "Bearer qtts_wrong"},
                   json={"model": "tts-1", "input": "x", "voice": "alloy",
                         "response_format": "mp3", "speed": 1.0})
    assert r.status_code == 401


# ------------------------------------------------------------------------- LiveKit Agents
def _livekit_client(graph) -> openai.OpenAI:
    """As livekit-plugins-openai's TTS builds it: max_retries=0, read timeout 5 s."""
    return openai.OpenAI(
        base_url=f"{graph.base_url}/v1", api_key=graph.api_key, max_retries=0,
        http_client=httpx.Client(timeout=httpx.Timeout(connect=15.0, read=5.0, write=5.0,
                                                       pool=5.0), follow_redirects=True))


def test_livekit_prewarm_get_root_needs_no_key(graph):
    assert httpx.get(f"{graph.base_url}/", timeout=30).status_code == 200


@pytest.mark.parametrize("fmt", ["mp3", "pcm"])
def test_livekit_streams_24khz_mono_within_its_read_timeout(graph, fmt):
    client = _livekit_client(graph)
    started = time.perf_counter()
    first_byte = None
    data = b""
    with client.audio.speech.with_streaming_response.create(
            input="Welcome to the room.", model="gpt-4o-mini-tts", voice="ash",
            response_format=fmt, speed=1.0, instructions="Friendly and upbeat.",
            timeout=httpx.Timeout(30, connect=10)) as stream:
        for piece in stream.iter_bytes():
            if piece and first_byte is None:
                first_byte = time.perf_counter() - started
            data += piece
    assert first_byte is not None and first_byte < 5.0
    if fmt == "pcm":
        assert len(data) % 2 == 0 and len(data) > 0  # 16-bit samples, read as 24 kHz mono
    else:
        container, rate, channels, seconds = decode(data)
        assert (rate, channels) == (24000, 1) and seconds > 0


# -------------------------------------------------------------------------------- Pipecat
def test_pipecat_voices_are_all_accepted_openai_names():
    assert set(PIPECAT_VOICES) <= set(OPENAI_VOICES)


@pytest.mark.parametrize("voice", PIPECAT_VOICES)
def test_pipecat_pcm_for_every_voice_it_allows(graph, voice):
    # run_tts: with_streaming_response.create(input, model, voice=VALID_VOICES[...],
    # response_format="pcm", extra_body={"instructions": ...}); iter_bytes(chunk_size) ->
    # TTSAudioRawFrame(chunk, 24000, 1)
    client = openai.OpenAI(base_url=f"{graph.base_url}/v1", api_key=graph.api_key,
                           max_retries=0)
    with client.audio.speech.with_streaming_response.create(
            input="Hi there.", model="gpt-4o-mini-tts", voice=voice, response_format="pcm",
            extra_body={"instructions": "Speak warmly."}) as r:
        assert r.status_code == 200
        assert r.headers["x-sample-rate"] == "24000"
        data = b"".join(r.iter_bytes(4800))
    assert len(data) % 2 == 0 and np.frombuffer(data, "<i2").size > 0


# ----------------------------------------------------------------------- the openai SDK
def test_sdk_models_list_parses_v1_models(graph):
    # also what Home Generative Agent calls to validate a server
    client = openai.OpenAI(base_url=f"{graph.base_url}/v1", api_key=graph.api_key,
                           max_retries=0)
    models = list(client.models.list())
    ids = [m.id for m in models]
    assert "CustomVoice" in ids and "tts-1" in ids
    assert all(m.object == "model" and isinstance(m.created, int) and m.owned_by for m in models)
    audio_models = httpx.get(f"{graph.base_url}/v1/audio/models", timeout=30).json()["models"]
    assert [m["id"] for m in audio_models] == ids  # one list, two shapes
