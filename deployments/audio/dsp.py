"""Signal processing on float32 mono arrays: mixdown, resampling, trimming, loudness, speed, pitch.

Every function takes and returns a float32 1-D array (except `to_mono`, which accepts
(channels, n)) and never modifies its input. Choices and limits are documented in docs/audio.md.
"""

from __future__ import annotations

import math

import numpy as np
import soxr

__all__ = [
    "PEAK_CEILING_DBFS",
    "SILENCE_FLOOR_DBFS",
    "change_speed",
    "normalize_loudness",
    "resample",
    "shift_pitch",
    "to_mono",
    "trim_silence",
    "warm_up",
]

#: normalize_loudness never lets a sample peak above this.
PEAK_CEILING_DBFS = -1.0
#: Frames quieter than this (RMS) are silence for trim_silence, whatever the clip's peak; audio
#: whose loudness is below it is left untouched by normalize_loudness.
SILENCE_FLOOR_DBFS = -60.0
#: BS.1770 gating block; shorter clips are normalised by RMS.
_GATING_BLOCK_SECONDS = 0.4
_ABSOLUTE_GATE_LUFS = -70.0
_TRIM_FRAME_SECONDS = 0.01
#: Clips shorter than this are too short to carry a pitch: speed/pitch use plain interpolation.
_MIN_STFT_SAMPLES = 64


def _mono_f32(samples: np.ndarray) -> np.ndarray:
    x = np.asarray(samples, dtype=np.float32)
    if x.ndim != 1:
        raise ValueError(f"expected mono 1-D samples, got shape {x.shape}")
    return x


def to_mono(samples: np.ndarray) -> np.ndarray:
    """(channels, n) or (n,) -> (n,) float32; channels are averaged."""
    x = np.asarray(samples, dtype=np.float32)
    if x.ndim == 1:
        return x.copy()
    if x.ndim != 2:
        raise ValueError(f"expected (channels, n) or (n,), got shape {x.shape}")
    if x.shape[0] == 1:
        return x[0].copy()
    return x.mean(axis=0, dtype=np.float32)


def resample(samples: np.ndarray, sr_in: int, sr_out: int) -> np.ndarray:
    """Resample with soxr (HQ); a copy of the input when the rates are equal."""
    x = _mono_f32(samples)
    if sr_in <= 0 or sr_out <= 0:
        raise ValueError(f"sample rates must be positive, got {sr_in} -> {sr_out}")
    if sr_in == sr_out or x.size == 0:
        return x.copy()
    return soxr.resample(x, sr_in, sr_out, quality="HQ").astype(np.float32, copy=False)


def trim_silence(
    samples: np.ndarray,
    sample_rate: int,
    *,
    top_db: float = 40.0,
    keep_seconds: float = 0.05,
) -> np.ndarray:
    """Cut leading and trailing silence, keeping `keep_seconds` of margin on each side.

    A 10 ms frame is sound when its RMS is within `top_db` of the loudest frame and above
    SILENCE_FLOOR_DBFS. Returns an empty array when no frame is sound.
    """
    x = _mono_f32(samples)
    frame = max(1, int(round(_TRIM_FRAME_SECONDS * sample_rate)))
    n_frames = -(-x.size // frame)
    if n_frames == 0:
        return x.copy()
    padded = np.zeros(n_frames * frame, dtype=np.float32)
    padded[: x.size] = x
    power = np.mean(np.square(padded.reshape(n_frames, frame), dtype=np.float64), axis=1)
    db = 10.0 * np.log10(np.maximum(power, 1e-20))
    threshold = max(float(db.max()) - top_db, SILENCE_FLOOR_DBFS)
    active = np.flatnonzero(db > threshold)
    if active.size == 0:
        return np.zeros(0, dtype=np.float32)
    keep = int(round(keep_seconds * sample_rate))
    start = max(0, int(active[0]) * frame - keep)
    end = min(x.size, (int(active[-1]) + 1) * frame + keep)
    return x[start:end].copy()


def _loudness_lufs(x: np.ndarray, sample_rate: int) -> float:
    """Integrated loudness (BS.1770); RMS in dBFS for clips shorter than one gating block."""
    if x.size >= int(math.ceil(_GATING_BLOCK_SECONDS * sample_rate)) + 1:
        import pyloudnorm  # deferred: pulls scipy.signal (~1-3 s), which the ingress never needs

        meter = pyloudnorm.Meter(sample_rate, block_size=_GATING_BLOCK_SECONDS)
        return float(meter.integrated_loudness(x.astype(np.float64)))
    rms = float(np.sqrt(np.mean(np.square(x, dtype=np.float64))))
    # A full-scale 1 kHz sine reads -3.01 LUFS and -3.01 dB RMS: RMS in dB approximates LUFS.
    return 20.0 * math.log10(rms) if rms > 0 else -math.inf


def normalize_loudness(samples: np.ndarray, sample_rate: int, target_lufs: float) -> np.ndarray:
    """Gain to `target_lufs` integrated loudness, then scaled down if needed so the peak stays
    at or below PEAK_CEILING_DBFS (the target is then missed rather than clipped).

    Audio quieter than the BS.1770 absolute gate (-70 LUFS), silence included, is returned
    unchanged so that noise is never blown up.
    """
    x = _mono_f32(samples)
    if x.size == 0 or not np.any(x):
        return x.copy()
    loudness = _loudness_lufs(x, sample_rate)
    if not math.isfinite(loudness) or loudness < _ABSOLUTE_GATE_LUFS:
        return x.copy()
    gain = 10.0 ** ((target_lufs - loudness) / 20.0)
    peak = float(np.max(np.abs(x))) * gain
    ceiling = 10.0 ** (PEAK_CEILING_DBFS / 20.0)
    if peak > ceiling:
        gain *= ceiling / peak
    return (x * np.float32(gain)).astype(np.float32, copy=False)


def _speech_n_fft(sample_rate: int, num_samples: int) -> int:
    """STFT size of about 40 ms (1024 at 24 kHz): short enough to keep speech transients;
    smaller for clips shorter than that."""
    n_fft = max(256, 2 ** int(round(math.log2(0.04 * sample_rate))))
    while n_fft > _MIN_STFT_SAMPLES and n_fft > num_samples:
        n_fft //= 2
    return n_fft


def change_speed(samples: np.ndarray, sample_rate: int, speed: float) -> np.ndarray:
    """Time-stretch keeping pitch (librosa phase vocoder): speed 2.0 halves the duration."""
    x = _mono_f32(samples)
    if speed <= 0:
        raise ValueError(f"speed must be positive, got {speed}")
    if speed == 1.0 or x.size == 0:
        return x.copy()
    if x.size < _MIN_STFT_SAMPLES:
        n_out = max(1, int(round(x.size / speed)))
        return np.interp(np.linspace(0, x.size - 1, n_out), np.arange(x.size), x).astype(
            np.float32
        )
    import librosa  # deferred: heavy (numba) and only needed for speed/pitch changes

    n_fft = _speech_n_fft(sample_rate, x.size)
    out = librosa.effects.time_stretch(x, rate=speed, n_fft=n_fft, hop_length=n_fft // 4)
    return out.astype(np.float32, copy=False)


def shift_pitch(samples: np.ndarray, sample_rate: int, factor: float) -> np.ndarray:
    """Shift pitch by a frequency `factor` (2.0 = one octave up) keeping the length."""
    x = _mono_f32(samples)
    if factor <= 0:
        raise ValueError(f"pitch factor must be positive, got {factor}")
    if factor == 1.0 or x.size < _MIN_STFT_SAMPLES:
        return x.copy()
    import librosa  # deferred: heavy (numba) and only needed for speed/pitch changes

    n_fft = _speech_n_fft(sample_rate, x.size)
    out = librosa.effects.pitch_shift(
        x,
        sr=sample_rate,
        n_steps=12.0 * math.log2(factor),
        n_fft=n_fft,
        hop_length=n_fft // 4,
        res_type="soxr_hq",
    )
    return out.astype(np.float32, copy=False)


def warm_up(sample_rate: int = 24000) -> None:
    """Pay the one-off cost of speed/pitch (librosa's lazy imports and numba compilation,
    seconds) at start-up instead of in the first request that asks for it."""
    t = np.arange(sample_rate // 2, dtype=np.float32) / sample_rate
    tone = (0.1 * np.sin(2 * np.pi * 220.0 * t)).astype(np.float32)
    change_speed(tone, sample_rate, 1.5)
    shift_pitch(tone, sample_rate, 1.5)
    normalize_loudness(tone, sample_rate, -23.0)
