"""The handle API: Python callers get the same typed operations as HTTP clients."""

from __future__ import annotations

import io

import pytest
import soundfile as sf
from ray import serve

from deployments.audio import RenderOptions
from serve_app.edge.api_errors import ApiError
from serve_app.protocol.speech import CustomVoiceInput, VoiceCloneInput, VoiceDesignInput
from tests.samples import wav_bytes


@pytest.fixture()
def ingress(graph):
    return serve.get_app_handle(graph.app_name)


def test_custom_voice_through_the_handle(ingress):
    out = ingress.custom_voice.remote(
        CustomVoiceInput(text="Hello.", speaker="Ryan", language="en", seed=2)
    ).result(timeout_s=120)
    audio, rate = sf.read(io.BytesIO(out.audio))
    assert out.content_type == "audio/wav" and rate == out.sample_rate == 24000
    assert abs(len(audio) / rate - out.duration_seconds) < 1e-3


def test_voice_design_and_clone_through_the_handle(ingress):
    design = ingress.voice_design.remote(
        VoiceDesignInput(text="Hi.", description="Bright and quick.",
                         output=RenderOptions(format="mp3"))
    ).result(timeout_s=120)
    assert design.content_type == "audio/mpeg" and design.audio
    clone = ingress.voice_clone.remote(
        VoiceCloneInput(text="Hi.", reference_audio=wav_bytes(2.0), x_vector_only=True)
    ).result(timeout_s=120)
    assert clone.audio[:4] == b"RIFF"


def test_handle_errors_are_the_same_api_errors(ingress):
    with pytest.raises(ApiError) as err:
        ingress.custom_voice.remote(CustomVoiceInput(text="x", speaker="Nobody")).result(timeout_s=60)
    assert err.value.status == 422 and err.value.param == "speaker"


def test_handle_lists_voices_and_health(ingress):
    voices = ingress.voices.remote().result(timeout_s=60)
    assert len(voices) == 9
    assert ingress.health.remote().result(timeout_s=60)["model_loaded"] is True
