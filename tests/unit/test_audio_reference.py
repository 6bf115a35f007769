"""Tests for deployments.audio.reference: limits of reference uploads and what a prepared one is."""

from __future__ import annotations

import io

import numpy as np
import pyloudnorm
import pytest
import soundfile as sf

from deployments.audio import reference
from deployments.audio.codecs import encode
from deployments.audio.errors import AudioInputError
from deployments.audio.reference import ReferenceLimits, prepare_reference


def tone(seconds: float, sr: int, freq: float = 220.0, amp: float = 0.3) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def wav(x: np.ndarray, sr: int) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, x.T if x.ndim == 2 else x, sr, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def refuse(data: bytes, **kwargs: object) -> AudioInputError:
    with pytest.raises(AudioInputError) as err:
        prepare_reference(data, **kwargs)  # type: ignore[arg-type]
    return err.value


def test_prepared_reference_is_mono_24k_trimmed_and_normalized() -> None:
    sr = 44100
    body = tone(3.0, sr, amp=0.05)
    padded = np.concatenate([np.zeros(sr, np.float32), body, np.zeros(sr // 2, np.float32)])
    upload = wav(np.stack([padded, padded * 0.5]), sr)
    ref = prepare_reference(upload)
    assert ref.sample_rate == 24000
    assert ref.samples.ndim == 1 and ref.samples.dtype == np.float32
    assert ref.duration_seconds == pytest.approx(3.1, abs=0.05)
    assert ref.samples.size == pytest.approx(ref.duration_seconds * 24000, abs=1)
    loudness = pyloudnorm.Meter(24000).integrated_loudness(ref.samples.astype(np.float64))
    assert loudness == pytest.approx(-23.0, abs=1.0)


def test_target_rate_and_loudness_are_configurable() -> None:
    ref = prepare_reference(wav(tone(2.0, 16000), 16000), target_sample_rate=16000,
                            target_lufs=-18.0)
    assert ref.sample_rate == 16000
    loudness = pyloudnorm.Meter(16000).integrated_loudness(ref.samples.astype(np.float64))
    assert loudness == pytest.approx(-18.0, abs=1.0)


def test_mp3_reference_is_accepted() -> None:
    ref = prepare_reference(encode(tone(2.0, 24000), 24000, "mp3"))
    assert ref.duration_seconds == pytest.approx(2.0, abs=0.15)


def test_half_second_clip_is_too_short() -> None:
    err = refuse(wav(tone(0.5, 24000), 24000))
    assert err.code == "too_short"
    assert err.param == "reference_audio"
    assert "at least 1.0 s of audible sound" in str(err)


def test_silence_only_is_too_short() -> None:
    err = refuse(wav(np.zeros(3 * 24000, np.float32), 24000))
    assert err.code == "too_short"
    assert "0.0 s of audible sound" in str(err)


def test_short_speech_padded_with_silence_is_too_short() -> None:
    x = np.concatenate([np.zeros(16000, np.float32), tone(0.5, 8000 * 2), np.zeros(16000,
                                                                                     np.float32)])
    assert refuse(wav(x, 16000)).code == "too_short"


def test_61_second_wav_is_too_long() -> None:
    err = refuse(wav(tone(61.0, 8000), 8000))
    assert err.code == "too_long"
    assert err.param == "reference_audio"
    assert str(err) == "reference_audio is 61.0 s long; at most 60 s is allowed"


def test_61_second_mp3_is_too_long() -> None:
    err = refuse(encode(tone(61.0, 8000), 8000, "mp3", bitrate_kbps=16))
    assert err.code == "too_long"
    assert "at most 60 s is allowed" in str(err)


def test_too_large_is_refused_without_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    def must_not_decode(*args: object, **kwargs: object) -> None:
        raise AssertionError("decode called on an oversized upload")

    monkeypatch.setattr(reference, "decode", must_not_decode)
    err = refuse(b"\0" * (10 * 1024 * 1024 + 1))
    assert err.code == "too_large"
    assert err.param == "reference_audio"
    assert "10485761 bytes" in str(err) and "at most 10 MiB" in str(err)


def test_exactly_max_bytes_is_not_too_large() -> None:
    err = refuse(b"x" * 1000, limits=ReferenceLimits(max_bytes=1000))
    assert err.code == "unreadable"


def test_empty_upload() -> None:
    err = refuse(b"")
    assert err.code == "empty" and err.param == "reference_audio"


def test_garbage_is_unreadable_with_the_param() -> None:
    err = refuse(b"this is a text file, not audio\n" * 20)
    assert err.code == "unreadable"
    assert err.param == "reference_audio"
    assert str(err).startswith("reference_audio could not be decoded")


def test_custom_param_and_limits() -> None:
    limits = ReferenceLimits(max_bytes=1 << 20, min_seconds=2.0, max_seconds=5.0)
    err = refuse(wav(tone(1.5, 16000), 16000), limits=limits, param="voice_sample")
    assert err.code == "too_short" and err.param == "voice_sample"
    assert "at least 2.0 s of audible sound" in str(err)
    err = refuse(wav(tone(6.0, 16000), 16000), limits=limits, param="voice_sample")
    assert err.code == "too_long" and err.param == "voice_sample"
    assert "at most 5 s" in str(err)
