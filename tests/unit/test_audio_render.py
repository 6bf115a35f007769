"""Tests for deployments.audio.render: options, DSP order, every output format, needs_processing."""

from __future__ import annotations

import importlib
import io
import struct

import av
import numpy as np
import pydantic
import pyloudnorm
import pytest
import soundfile as sf

from deployments.audio.formats import FORMAT_INFO, AudioFormat
from deployments.audio.render import RenderOptions, needs_processing, render

# The package re-exports the function `render`, which shadows the submodule attribute.
render_module = importlib.import_module("deployments.audio.render")
SR = 24000


def tone(seconds: float = 2.0, sr: int = SR, freq: float = 440.0, amp: float = 0.3) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def test_default_render_is_wav_at_the_input_rate() -> None:
    out = render(tone(), SR, RenderOptions())
    assert out.format is AudioFormat.WAV
    assert out.content_type == "audio/wav"
    assert out.sample_rate == SR and out.num_samples == 2 * SR
    assert out.duration_seconds == pytest.approx(2.0)
    y, sr = sf.read(io.BytesIO(out.data), dtype="float32")
    assert sr == SR and y.size == 2 * SR


def test_sample_rate_16000_gives_a_16k_wav_of_the_reported_duration() -> None:
    out = render(tone(), SR, RenderOptions(sample_rate=16000))
    info = sf.info(io.BytesIO(out.data))
    assert info.samplerate == 16000 and out.sample_rate == 16000
    assert info.frames / 16000 == out.duration_seconds
    assert out.duration_seconds == pytest.approx(2.0, abs=0.001)


@pytest.mark.parametrize("fmt", list(AudioFormat))
def test_every_format_renders_with_its_content_type(fmt: AudioFormat) -> None:
    out = render(tone(), SR, RenderOptions(format=fmt))
    assert out.format is fmt
    assert out.content_type == FORMAT_INFO[fmt].content_type
    assert out.data
    assert out.duration_seconds == pytest.approx(2.0)


def test_opus_reports_the_rate_actually_encoded() -> None:
    out = render(tone(), SR, RenderOptions(format="opus", sample_rate=44100))
    assert out.sample_rate == 48000
    assert out.num_samples == 2 * 48000
    i = out.data.index(b"OpusHead")
    assert struct.unpack("<I", out.data[i + 12 : i + 16])[0] == 48000


def test_mp3_bitrate_is_applied() -> None:
    out = render(tone(), SR, RenderOptions(format="mp3", bitrate_kbps=64))
    with av.open(io.BytesIO(out.data)) as box:
        assert box.streams.audio[0].bit_rate == 64000


def test_speed_two_halves_the_rendered_duration() -> None:
    out = render(tone(), SR, RenderOptions(speed=2.0))
    assert out.duration_seconds == pytest.approx(1.0, rel=0.05)


def test_pitch_keeps_the_rendered_duration() -> None:
    out = render(tone(), SR, RenderOptions(pitch=1.5))
    assert out.num_samples == 2 * SR


def test_loudness_is_applied_on_the_output() -> None:
    out = render(tone(amp=0.01), SR, RenderOptions(loudness_lufs=-16.0, sample_rate=48000))
    y, sr = sf.read(io.BytesIO(out.data), dtype="float64")
    assert sr == 48000
    assert pyloudnorm.Meter(sr).integrated_loudness(y) == pytest.approx(-16.0, abs=1.0)


def test_dsp_order_is_pitch_speed_resample_loudness(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    dsp = render_module.dsp

    def spy(name: str):
        real = getattr(dsp, name)

        def wrapper(*args, **kwargs):
            calls.append(name)
            return real(*args, **kwargs)

        return wrapper

    for name in ("shift_pitch", "change_speed", "resample", "normalize_loudness"):
        monkeypatch.setattr(dsp, name, spy(name))
    options = RenderOptions(format="mp3", sample_rate=16000, speed=1.25, pitch=0.8,
                            loudness_lufs=-20.0)
    render(tone(), SR, options)
    assert calls == ["shift_pitch", "change_speed", "resample", "normalize_loudness"]


def test_stereo_input_is_mixed_down() -> None:
    x = tone()
    out = render(np.stack([x, x]), SR, RenderOptions(format="pcm"))
    assert len(out.data) == 2 * x.size


def test_options_validate() -> None:
    assert RenderOptions(format="mp3").format is AudioFormat.MP3
    for bad in ({"speed": 5.0}, {"speed": 0.1}, {"pitch": 3.0}, {"sample_rate": 4000},
                {"sample_rate": 96000}, {"loudness_lufs": 0.0}, {"bitrate_kbps": 8},
                {"format": "ogg"}, {"volume": 2.0}):
        with pytest.raises(pydantic.ValidationError):
            RenderOptions(**bad)
    with pytest.raises(pydantic.ValidationError):
        RenderOptions().speed = 2.0  # type: ignore[misc]


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        (RenderOptions(), False),
        (RenderOptions(format="pcm"), False),
        (RenderOptions(sample_rate=SR), False),
        (RenderOptions(format="pcm", sample_rate=SR, bitrate_kbps=64), False),
        (RenderOptions(sample_rate=16000), True),
        (RenderOptions(speed=1.1), True),
        (RenderOptions(pitch=0.9), True),
        (RenderOptions(loudness_lufs=-23.0), True),
        (RenderOptions(format="mp3"), True),
        (RenderOptions(format="opus"), True),
        (RenderOptions(format="aac"), True),
        (RenderOptions(format="flac"), True),
    ],
)
def test_needs_processing_truth_table(options: RenderOptions, expected: bool) -> None:
    assert needs_processing(options, SR) is expected
