"""OpenAI compatibility, checked with the official openai SDK against the running graph."""

from __future__ import annotations

import io

import av
import numpy as np
import openai
import pytest
import soundfile as sf


@pytest.fixture()
def client(graph) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{graph.base_url}/v1", api_key=graph.api_key, max_retries=0)


def decode_any(data: bytes) -> tuple[int, float]:
    """(sample rate, seconds) through a standard decoder (libav)."""
    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.audio[0]
        samples = sum(frame.samples for frame in container.decode(stream))
        return stream.rate, samples / stream.rate


@pytest.mark.parametrize("fmt", ["mp3", "opus", "aac", "flac", "wav"])
def test_sdk_produces_each_format(client, fmt):
    response = client.audio.speech.create(
        model="tts-1", voice="alloy", input="Hello from the SDK.", response_format=fmt,
        extra_body={"seed": 3},
    )
    data = response.read()
    expected_type = {"mp3": "audio/mpeg", "opus": "audio/ogg", "aac": "audio/aac",
                     "flac": "audio/flac", "wav": "audio/wav"}[fmt]
    assert response.response.headers["content-type"] == expected_type
    rate, seconds = decode_any(data)
    assert rate in (24000, 48000) and seconds > 0


def test_sdk_pcm_is_raw_16bit_24khz(client):
    data = client.audio.speech.create(
        model="tts-1", voice="alloy", input="Raw samples.", response_format="pcm",
        extra_body={"seed": 3},
    ).read()
    samples = np.frombuffer(data, dtype="<i2")
    assert len(data) % 2 == 0 and samples.size > 0
    wav = client.audio.speech.create(
        model="tts-1", voice="alloy", input="Raw samples.", response_format="wav",
        extra_body={"seed": 3},
    ).read()
    reference, rate = sf.read(io.BytesIO(wav), dtype="int16")
    assert rate == 24000 and np.array_equal(reference, samples)


def test_model_names_are_case_insensitive_and_openai_aliases_work(client):
    for model in ("CustomVoice", "customvoice", "tts-1-hd", "gpt-4o-mini-tts"):
        data = client.audio.speech.create(model=model, voice="Vivian", input="Hi.",
                                          response_format="wav").read()
        assert data[:4] == b"RIFF"


def test_voice_design_through_instructions(client):
    data = client.audio.speech.create(
        model="VoiceDesign", voice="alloy", input="A new voice.", response_format="wav",
        instructions="A deep, calm male narrator.",
    ).read()
    assert data[:4] == b"RIFF"


def test_unknown_voice_is_a_422_listing_presets_and_openai_names(client):
    with pytest.raises(openai.UnprocessableEntityError) as err:
        client.audio.speech.create(model="tts-1", voice="nobody", input="x")
    message = err.value.body["message"]
    assert "Vivian" in message and "alloy" in message
    assert err.value.body["param"] == "voice"


def test_unknown_model_is_a_422_listing_models(client):
    with pytest.raises(openai.UnprocessableEntityError) as err:
        client.audio.speech.create(model="tts-2", voice="alloy", input="x")
    assert "CustomVoice" in err.value.body["message"] and "tts-1" in err.value.body["message"]


def test_unsupported_format_is_a_422(client):
    with pytest.raises(openai.UnprocessableEntityError) as err:
        client.audio.speech.create(model="tts-1", voice="alloy", input="x",
                                   response_format="ogg")  # type: ignore[arg-type]
    assert err.value.body["param"] == "response_format"


def test_speed_is_applied(client):
    def seconds(speed: float) -> float:
        data = client.audio.speech.create(model="tts-1", voice="alloy", input="Speed test.",
                                          response_format="wav", speed=speed,
                                          extra_body={"seed": 5}).read()
        info = sf.info(io.BytesIO(data))
        return info.frames / info.samplerate

    normal, fast = seconds(1.0), seconds(2.0)
    assert abs(fast - normal / 2) <= 0.05 * normal / 2 + 0.01


def test_models_lists_deployments_and_aliases(client):
    ids = {m.id for m in client.models.list()}
    assert ids == {"CustomVoice", "VoiceDesign", "VoiceClone", "tts-1", "tts-1-hd",
                   "gpt-4o-mini-tts"}
