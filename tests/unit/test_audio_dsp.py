"""Tests for deployments.audio.dsp: mixdown, resampling, trimming, loudness, speed and pitch."""

from __future__ import annotations

import numpy as np
import pyloudnorm
import pytest

from deployments.audio import dsp
from deployments.audio.dsp import (
    change_speed,
    normalize_loudness,
    resample,
    shift_pitch,
    to_mono,
    trim_silence,
)
from tests.samples import peak_hz
from tests.samples import sine as tone

SR = 24000




def lufs(x: np.ndarray, sr: int) -> float:
    return float(pyloudnorm.Meter(sr).integrated_loudness(x.astype(np.float64)))


# ------------------------------------------------------------------------------------------
# to_mono / resample


def test_to_mono_mixes_channels() -> None:
    stereo = np.stack([np.ones(10, np.float32), np.zeros(10, np.float32)])
    mono = to_mono(stereo)
    assert mono.shape == (10,) and mono.dtype == np.float32
    assert np.allclose(mono, 0.5)


def test_to_mono_passes_mono_through() -> None:
    x = tone(seconds=0.1)
    assert np.array_equal(to_mono(x), x)
    assert np.array_equal(to_mono(x[None, :]), x)


def test_to_mono_rejects_other_shapes() -> None:
    with pytest.raises(ValueError):
        to_mono(np.zeros((2, 2, 2), np.float32))


def test_resample_44k1_to_24k_keeps_a_tones_frequency() -> None:
    x = tone(1000.0, seconds=1.0, sr=44100)
    y = resample(x, 44100, 24000)
    assert y.dtype == np.float32
    assert y.size == pytest.approx(24000, abs=2)
    assert peak_hz(y, 24000) == pytest.approx(1000.0, rel=0.01)
    assert np.sqrt(np.mean(y**2)) == pytest.approx(np.sqrt(np.mean(x**2)), rel=0.02)


def test_resample_is_identity_at_equal_rates() -> None:
    x = tone(seconds=0.1)
    y = resample(x, SR, SR)
    assert np.array_equal(x, y) and y is not x


# ------------------------------------------------------------------------------------------
# trim_silence


def test_trim_silence_cuts_leading_and_trailing_silence() -> None:
    body = tone(seconds=1.0)
    x = np.concatenate([np.zeros(SR, np.float32), body, np.zeros(2 * SR, np.float32)])
    y = trim_silence(x, SR, keep_seconds=0.05)
    assert y.size / SR == pytest.approx(1.1, abs=0.02)


def test_trim_silence_treats_a_faint_noise_floor_as_silence() -> None:
    rng = np.random.default_rng(0)
    noise = (rng.standard_normal(3 * SR) * 1e-4).astype(np.float32)  # about -80 dBFS
    x = noise.copy()
    x[SR : 2 * SR] += tone(seconds=1.0)
    assert trim_silence(x, SR).size / SR == pytest.approx(1.1, abs=0.02)
    assert trim_silence(noise, SR).size == 0


def test_trim_silence_of_silence_is_empty() -> None:
    assert trim_silence(np.zeros(3 * SR, np.float32), SR).size == 0
    assert trim_silence(np.zeros(0, np.float32), SR).size == 0


def test_trim_silence_keeps_quiet_parts_within_top_db() -> None:
    x = np.concatenate([tone(seconds=0.5, amp=0.02), tone(seconds=0.5, amp=0.5)])
    assert trim_silence(x, SR, top_db=40.0).size == x.size
    assert trim_silence(x, SR, top_db=20.0).size / SR == pytest.approx(0.55, abs=0.02)


# ------------------------------------------------------------------------------------------
# normalize_loudness


@pytest.mark.parametrize("target", [-30.0, -23.0, -16.0])
def test_loudness_normalization_hits_the_target(target: float) -> None:
    x = tone(seconds=3.0, amp=0.02)
    y = normalize_loudness(x, SR, target)
    assert lufs(y, SR) == pytest.approx(target, abs=1.0)
    assert np.max(np.abs(y)) < 1.0


def test_loudness_normalization_never_clips() -> None:
    rng = np.random.default_rng(1)
    x = (rng.standard_normal(3 * SR) * 0.01).astype(np.float32)
    x[SR] = 0.9  # a click: reaching -5 LUFS would push it far above full scale
    y = normalize_loudness(x, SR, -5.0)
    ceiling = 10 ** (dsp.PEAK_CEILING_DBFS / 20)
    assert np.max(np.abs(y)) <= ceiling + 1e-6
    assert np.max(np.abs(y)) == pytest.approx(ceiling, rel=1e-3)


def test_silence_stays_silence() -> None:
    assert not np.any(normalize_loudness(np.zeros(SR, np.float32), SR, -23.0))
    faint = np.full(SR, 1e-6, np.float32)  # below the -70 LUFS absolute gate
    assert np.array_equal(normalize_loudness(faint, SR, -23.0), faint)


def test_short_clips_fall_back_to_rms_gain() -> None:
    x = tone(1000.0, seconds=0.2, amp=0.01)
    y = normalize_loudness(x, SR, -20.0)
    rms_db = 20 * np.log10(np.sqrt(np.mean(y.astype(np.float64) ** 2)))
    assert rms_db == pytest.approx(-20.0, abs=0.5)


# ------------------------------------------------------------------------------------------
# speed / pitch


def test_speed_two_halves_duration() -> None:
    x = tone(seconds=2.0)
    y = change_speed(x, SR, 2.0)
    assert y.size / SR == pytest.approx(1.0, rel=0.05)
    assert peak_hz(y, SR) == pytest.approx(440.0, rel=0.05)


def test_speed_half_doubles_duration() -> None:
    x = tone(seconds=1.0)
    y = change_speed(x, SR, 0.5)
    assert y.dtype == np.float32
    assert y.size / SR == pytest.approx(2.0, rel=0.05)
    assert peak_hz(y, SR) == pytest.approx(440.0, rel=0.05)


def test_speed_one_is_a_copy() -> None:
    x = tone(seconds=0.1)
    y = change_speed(x, SR, 1.0)
    assert np.array_equal(x, y) and y is not x


def test_pitch_two_keeps_length_and_doubles_frequency() -> None:
    x = tone(seconds=2.0)
    y = shift_pitch(x, SR, 2.0)
    assert y.size == x.size and y.dtype == np.float32
    assert peak_hz(y, SR) == pytest.approx(880.0, rel=0.10)


def test_pitch_half_halves_frequency() -> None:
    x = tone(seconds=2.0)
    y = shift_pitch(x, SR, 0.5)
    assert y.size == x.size
    assert peak_hz(y, SR) == pytest.approx(220.0, rel=0.10)


def test_speed_and_pitch_handle_tiny_clips() -> None:
    x = tone(seconds=0.001)  # 24 samples
    assert change_speed(x, SR, 2.0).size == 12
    assert shift_pitch(x, SR, 2.0).size == x.size
    assert change_speed(np.zeros(0, np.float32), SR, 2.0).size == 0


def test_inputs_are_not_modified() -> None:
    x = tone(seconds=0.5)
    before = x.copy()
    for out in (
        normalize_loudness(x, SR, -10.0),
        change_speed(x, SR, 1.5),
        shift_pitch(x, SR, 1.5),
        trim_silence(x, SR),
        resample(x, SR, 16000),
    ):
        assert out.dtype == np.float32
    assert np.array_equal(x, before)
