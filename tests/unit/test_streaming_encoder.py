"""StreamEncoder: every streaming format decodes with a standard decoder, bytes leave per
chunk, streaming resampling equals whole-buffer resampling, refusals of whole-buffer DSP."""

from __future__ import annotations

import io

import av
import numpy as np
import pytest
import soundfile as sf
import soxr

from deployments.audio import RenderOptions, StreamEncoder
from deployments.audio.formats import AudioFormat
from serve_app.edge.api_errors import ApiError
from serve_app.synthesis.audio_stream import check_stream_options

RATE = 24_000


def _signal(seconds: float = 1.2) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    return (0.4 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)


def _chunks(x: np.ndarray) -> list[np.ndarray]:
    sizes = [1920, 5760, 5760, 5760]  # 1 frame, then 3-frame chunks, then the rest
    out, start = [], 0
    for n in sizes:
        out.append(x[start:start + n])
        start += n
    out.append(x[start:])
    return out


def _stream(fmt: AudioFormat, x: np.ndarray, **kw) -> tuple[list[bytes], bytes, StreamEncoder]:
    enc = StreamEncoder(fmt, RATE, **kw)
    parts = [enc.write(c) for c in _chunks(x)]
    return parts, enc.close(), enc


def _pyav_decode(data: bytes) -> tuple[np.ndarray, int]:
    with av.open(io.BytesIO(data)) as box:
        stream = box.streams.audio[0]
        frames = [f.to_ndarray().reshape(-1) for f in box.decode(stream)]
        y = np.concatenate(frames)
        if np.issubdtype(y.dtype, np.integer):
            y = y.astype(np.float32) / 32767
        return y, stream.codec_context.sample_rate


@pytest.mark.parametrize("fmt", list(AudioFormat), ids=lambda f: f.value)
def test_each_streaming_format_decodes_with_a_standard_decoder(fmt):
    x = _signal()
    parts, tail, enc = _stream(fmt, x)
    data = b"".join(parts) + tail
    if fmt is AudioFormat.PCM:
        y = np.frombuffer(data, "<i2").astype(np.float32) / 32767
        rate = RATE
    elif fmt is AudioFormat.WAV:
        y, rate = sf.read(io.BytesIO(data), dtype="float32")  # header says "unknown length"
    else:
        y, rate = _pyav_decode(data)
    assert enc.sample_rate == RATE
    # libopus always decodes at 48 kHz (the Ogg header keeps the 24 kHz input rate)
    assert rate == (48_000 if fmt is AudioFormat.OPUS else RATE)
    # lossy codecs add priming/padding: length within 100 ms, never silent
    expected = x.size * rate // RATE
    assert abs(y.size - expected) <= (0 if fmt in (AudioFormat.PCM, AudioFormat.WAV) else rate // 10)
    assert np.sqrt(np.mean(y.astype(np.float64) ** 2)) > 0.2
    if fmt in (AudioFormat.PCM, AudioFormat.WAV, AudioFormat.FLAC):
        assert np.abs(y[: x.size] - x).max() < 1e-3  # lossless up to 16-bit quantisation


@pytest.mark.parametrize("fmt", [AudioFormat.PCM, AudioFormat.WAV, AudioFormat.OPUS,
                                 AudioFormat.AAC, AudioFormat.FLAC], ids=lambda f: f.value)
def test_bytes_leave_as_chunks_arrive(fmt):
    parts, _, _ = _stream(fmt, _signal())
    # AAC holds ~2048 samples of look-ahead and FLAC codes 4608-sample blocks: with an 80 ms
    # first chunk their first bytes come with chunk 2
    first = 1 if fmt in (AudioFormat.AAC, AudioFormat.FLAC) else 0
    assert parts[first], "bytes must leave with the first chunks, not at the end"
    assert sum(1 for p in parts if p) >= 3


def test_mp3_bytes_flow_during_the_stream():
    parts, tail, _ = _stream(AudioFormat.MP3, _signal(2.0))
    assert sum(len(p) for p in parts) > len(tail)  # not everything held to the end


def test_wav_stream_header_says_unknown_length():
    parts, _, _ = _stream(AudioFormat.WAV, _signal())
    assert parts[0][:4] == b"RIFF" and parts[0][40:44] == b"\xff\xff\xff\xff"


def test_streaming_resample_equals_whole_buffer_resample():
    x = _signal()
    parts, tail, enc = _stream(AudioFormat.PCM, x, sample_rate=16_000)
    y = np.frombuffer(b"".join(parts) + tail, "<i2").astype(np.float32) / 32767
    whole = soxr.resample(x, RATE, 16_000, quality="HQ")
    assert enc.sample_rate == 16_000 and abs(y.size - whole.size) <= 1
    n = min(y.size, whole.size)
    assert np.abs(y[:n] - whole[:n]).max() < 2e-3


@pytest.mark.parametrize("field, options", [
    ("speed", RenderOptions(speed=1.5)),
    ("pitch", RenderOptions(pitch=0.8)),
    ("loudness_lufs", RenderOptions(loudness_lufs=-16.0)),
])
def test_whole_buffer_dsp_is_refused_while_streaming(field, options):
    with pytest.raises(ApiError) as err:
        check_stream_options(options)
    assert err.value.status == 400 and err.value.param == field and field in err.value.message


def test_neutral_options_and_sample_rate_stream():
    check_stream_options(RenderOptions(format="mp3", sample_rate=16_000))
