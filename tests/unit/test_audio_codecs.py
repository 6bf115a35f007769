"""Tests for deployments.audio.codecs: every output format round-trips, uploads decode, bad input
is refused with the right AudioInputError code. No Ray, no ffmpeg binary."""

from __future__ import annotations

import io
import struct
import time

import av
import numpy as np
import pytest
import soundfile as sf

from deployments.audio import codecs
from deployments.audio.codecs import decode, encode, encoder_sample_rate, wav_header
from deployments.audio.dsp import to_mono
from deployments.audio.errors import AudioInputError
from deployments.audio.formats import AudioFormat
from tests.samples import peak_hz
from tests.samples import sine as tone

SR = 24000




def rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64))))


def pyav_decode(data: bytes) -> tuple[np.ndarray, int]:
    """Reference decoder for the lossy formats, independent of codecs.decode."""
    with av.open(io.BytesIO(data)) as box:
        stream = box.streams.audio[0]
        chunks = [f.to_ndarray().reshape(f.layout.nb_channels if f.format.is_planar else 1, -1)
                  for f in box.decode(stream)]
        return np.concatenate(chunks, axis=1)[0].astype(np.float32), stream.rate


def opus_head_rate(data: bytes) -> int:
    i = data.index(b"OpusHead")
    return struct.unpack("<I", data[i + 12 : i + 16])[0]


def pyav_file(x: np.ndarray, sr: int, container: str, codec: str) -> bytes:
    """Build an upload with PyAV (e.g. m4a/aac, webm/opus); x is (n,) or (2, n)."""
    buf = io.BytesIO()
    layout = "stereo" if x.ndim == 2 else "mono"
    planes = x.reshape(2 if x.ndim == 2 else 1, -1)
    with av.open(buf, mode="w", format=container) as out:
        stream = out.add_stream(codec, rate=sr, layout=layout)
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(planes), format="fltp",
                                           layout=layout)
        frame.sample_rate = sr
        frame.pts = 0
        for packet in stream.encode(frame):
            out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return buf.getvalue()


def sf_file(x: np.ndarray, sr: int, fmt: str, subtype: str | None = None) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, x.T if x.ndim == 2 else x, sr, format=fmt, subtype=subtype)
    return buf.getvalue()


# ------------------------------------------------------------------------------------------
# encode


@pytest.mark.parametrize("fmt", list(AudioFormat))
def test_every_format_round_trips(fmt: AudioFormat) -> None:
    x = tone()
    data = encode(x, SR, fmt)
    if fmt in (AudioFormat.WAV, AudioFormat.FLAC):
        y, sr = sf.read(io.BytesIO(data), dtype="float32")
    elif fmt is AudioFormat.PCM:
        y, sr = np.frombuffer(data, dtype="<i2").astype(np.float32) / 32767.0, SR
    else:
        y, sr = pyav_decode(data)
    expected_sr = 48000 if fmt is AudioFormat.OPUS else SR  # ffmpeg decodes opus at 48 kHz
    assert sr == expected_sr
    assert y.size / sr == pytest.approx(2.0, rel=0.05)
    assert rms(y) > 0.2
    assert peak_hz(y, sr) == pytest.approx(440.0, rel=0.02)


@pytest.mark.parametrize("fmt", [AudioFormat.WAV, AudioFormat.FLAC, AudioFormat.PCM])
def test_lossless_formats_are_bit_exact_at_16_bit(fmt: AudioFormat) -> None:
    x = tone(seconds=0.5)
    data = encode(x, SR, fmt)
    if fmt is AudioFormat.PCM:
        y = np.frombuffer(data, dtype="<i2")
    else:
        y, _ = sf.read(io.BytesIO(data), dtype="int16")
    assert np.array_equal(y, np.round(x * 32767).astype(np.int16))


def test_wav_is_16_bit_pcm_riff() -> None:
    data = encode(tone(seconds=0.1), SR, "wav")
    info = sf.info(io.BytesIO(data))
    assert data[:4] == b"RIFF" and data[8:12] == b"WAVE"
    assert info.subtype == "PCM_16" and info.channels == 1 and info.samplerate == SR
    assert len(data) == 44 + 2 * int(0.1 * SR)


def test_lossy_formats_start_with_their_magic() -> None:
    x = tone()
    mp3 = encode(x, SR, AudioFormat.MP3)
    assert mp3[:3] == b"ID3" or (mp3[0] == 0xFF and mp3[1] & 0xE0 == 0xE0)
    opus = encode(x, SR, AudioFormat.OPUS)
    assert opus[:4] == b"OggS" and b"OpusHead" in opus[:100]
    aac = encode(x, SR, AudioFormat.AAC)
    assert aac[0] == 0xFF and aac[1] & 0xF6 == 0xF0  # ADTS sync word, layer 0


def test_mp3_is_mono_at_the_default_bitrate() -> None:
    data = encode(tone(), SR, "mp3")
    with av.open(io.BytesIO(data)) as box:
        stream = box.streams.audio[0]
        assert stream.codec_context.channels == 1
        assert stream.bit_rate == codecs.DEFAULT_BITRATE_KBPS[AudioFormat.MP3] * 1000


def test_bitrate_changes_the_size_of_lossy_output() -> None:
    x = tone(seconds=2.0)
    for fmt in (AudioFormat.MP3, AudioFormat.OPUS, AudioFormat.AAC):
        small = encode(x, SR, fmt, bitrate_kbps=32)
        large = encode(x, SR, fmt, bitrate_kbps=128)
        assert len(large) > 2 * len(small), fmt


def test_opus_at_an_unsupported_rate_is_encoded_at_48k() -> None:
    assert encoder_sample_rate("opus", 22050) == 48000
    assert encoder_sample_rate("opus", 16000) == 16000
    data = encode(tone(sr=22050), 22050, "opus")
    assert opus_head_rate(data) == 48000
    y, sr = pyav_decode(data)
    assert y.size / sr == pytest.approx(2.0, rel=0.05)
    assert peak_hz(y, sr) == pytest.approx(440.0, rel=0.02)


def test_opus_keeps_a_supported_rate() -> None:
    assert opus_head_rate(encode(tone(), SR, "opus")) == SR


def test_mp3_keeps_the_sample_rate_even_at_a_low_bitrate() -> None:
    # LAME alone would downsample 48 kHz to 22.05 kHz at 32 kbps.
    data = encode(tone(sr=48000), 48000, "mp3", bitrate_kbps=32)
    _, sr = pyav_decode(data)
    assert sr == 48000


def test_mp3_and_aac_move_nonstandard_rates_up_to_a_standard_one() -> None:
    assert encoder_sample_rate("mp3", 20000) == 22050
    assert encoder_sample_rate("aac", 20000) == 22050
    assert encoder_sample_rate("wav", 20000) == 20000
    _, sr = pyav_decode(encode(tone(sr=20000), 20000, "aac"))
    assert sr == 22050


def test_encode_clips_out_of_range_samples() -> None:
    x = np.array([2.0, -3.0, 0.5, np.nan], dtype=np.float32)
    y = np.frombuffer(encode(x, SR, "pcm"), dtype="<i2")
    assert y.tolist() == [32767, -32767, 16384, 0]


def test_unknown_format_is_an_invalid_option_of_response_format() -> None:
    with pytest.raises(AudioInputError) as err:
        encode(tone(seconds=0.1), SR, "ogg-vorbis")
    assert err.value.code == "invalid_option"
    assert err.value.param == "response_format"
    assert "mp3" in str(err.value)


def test_format_names_are_accepted_as_strings() -> None:
    assert encode(tone(seconds=0.1), SR, "FLAC")[:4] == b"fLaC"


def test_wav_header_for_a_stream_of_unknown_length() -> None:
    header = wav_header(SR, None)
    assert len(header) == 44 and header[4:8] == b"\xff\xff\xff\xff"
    assert wav_header(SR, 10)[40:44] == struct.pack("<I", 20)


# ------------------------------------------------------------------------------------------
# decode


def _upload(kind: str, x: np.ndarray, sr: int) -> bytes:
    if kind == "wav":
        return sf_file(x, sr, "WAV", "PCM_16")
    if kind == "flac":
        return sf_file(x, sr, "FLAC")
    if kind == "mp3":
        return sf_file(x, sr, "MP3", "MPEG_LAYER_III")
    if kind == "ogg-vorbis":
        return sf_file(x, sr, "OGG", "VORBIS")
    if kind == "ogg-opus":
        return sf_file(x, sr, "OGG", "OPUS")
    if kind == "m4a":
        return pyav_file(x, sr, "mp4", "aac")
    if kind == "adts":
        return pyav_file(x, sr, "adts", "aac")
    if kind == "webm":
        return pyav_file(x, 48000, "webm", "libopus")
    raise AssertionError(kind)


@pytest.mark.parametrize(
    "kind", ["wav", "flac", "mp3", "ogg-vorbis", "ogg-opus", "m4a", "adts", "webm"]
)
def test_decode_accepts_common_upload_formats(kind: str) -> None:
    sr = 48000 if kind in ("ogg-opus", "webm") else 44100
    data = _upload(kind, tone(seconds=1.5, sr=sr), sr)
    decoded = decode(data)
    assert decoded.samples.dtype == np.float32
    assert decoded.channels == 1
    assert decoded.sample_rate == sr
    assert decoded.duration_seconds == pytest.approx(1.5, rel=0.05)
    assert peak_hz(decoded.samples[0], sr) == pytest.approx(440.0, rel=0.02)


@pytest.mark.parametrize("kind", ["wav", "m4a"])
def test_stereo_decodes_with_two_channels_and_to_mono_mixes_them(kind: str) -> None:
    left = tone(seconds=1.0, sr=44100)
    stereo = np.stack([left, np.zeros_like(left)])
    decoded = decode(_upload(kind, stereo, 44100))
    assert decoded.channels == 2
    mono = to_mono(decoded.samples)
    assert mono.ndim == 1 and mono.size == decoded.samples.shape[1]
    assert rms(mono) == pytest.approx(rms(decoded.samples[0]) / 2, rel=0.05)


def test_every_encoded_format_decodes_with_decode() -> None:
    for fmt in (AudioFormat.WAV, AudioFormat.FLAC, AudioFormat.MP3, AudioFormat.OPUS,
                AudioFormat.AAC):
        decoded = decode(encode(tone(), SR, fmt))
        assert decoded.duration_seconds == pytest.approx(2.0, rel=0.05), fmt


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (b"", "empty"),
        (bytes(range(256)) * 40, "unreadable"),
        (b"just some text, certainly not audio\n" * 50, "unreadable"),
        (b"#EXTM3U\n#EXTINF:10,\nfile:///etc/passwd\n", "unreadable"),
        (b"\xff\xfb" + bytes(2000), "unreadable"),
        (b"OggS" + bytes(500), "unreadable"),
        (b"fLaC" + bytes(10), "unreadable"),
    ],
    ids=["empty", "garbage", "text", "playlist", "mp3-sync-then-zeros", "ogg-junk", "flac-junk"],
)
def test_bad_input_is_refused(data: bytes, code: str) -> None:
    with pytest.raises(AudioInputError) as err:
        decode(data)
    assert err.value.code == code


def test_truncated_header_is_unreadable() -> None:
    for kind in ("wav", "flac", "mp3", "ogg-vorbis", "m4a"):
        data = _upload(kind, tone(seconds=1.0, sr=44100), 44100)
        with pytest.raises(AudioInputError) as err:
            decode(data[:24])
        assert err.value.code == "unreadable", kind


def test_unreadable_message_lists_the_accepted_formats() -> None:
    with pytest.raises(AudioInputError) as err:
        decode(b"not audio at all" * 10)
    for name in ("wav", "flac", "mp3", "ogg", "m4a"):
        assert name in str(err.value)


def test_file_without_an_audio_stream_is_unreadable() -> None:
    buf = io.BytesIO()
    with av.open(buf, mode="w", format="mp4") as out:
        stream = out.add_stream("mpeg4", rate=10)
        stream.width, stream.height, stream.pix_fmt = 32, 32, "yuv420p"
        for i in range(3):
            frame = av.VideoFrame.from_ndarray(np.zeros((32, 32, 3), np.uint8), format="rgb24")
            frame.pts = i
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    with pytest.raises(AudioInputError) as err:
        decode(buf.getvalue())
    assert err.value.code == "unreadable"
    assert "no audio stream" in str(err.value)


def test_too_long_from_the_wav_header() -> None:
    data = sf_file(tone(seconds=61.0, sr=8000, amp=0.1), 8000, "WAV", "PCM_16")
    with pytest.raises(AudioInputError) as err:
        decode(data, max_seconds=60.0, param="reference_audio")
    assert err.value.code == "too_long"
    assert err.value.param == "reference_audio"
    assert str(err.value) == "reference_audio is 61.0 s long; at most 60 s is allowed"


def test_too_long_mp3_stops_decoding_early() -> None:
    # A small file that decodes to 10 minutes: decoding must stop just past the limit.
    data = encode(np.zeros(600 * 8000, np.float32), 8000, "mp3", bitrate_kbps=8)
    assert len(data) < 1_000_000
    started = time.perf_counter()
    with pytest.raises(AudioInputError) as err:
        decode(data, max_seconds=5.0)
    early = time.perf_counter() - started
    assert err.value.code == "too_long"
    assert "at most 5 s" in str(err.value)
    started = time.perf_counter()
    decode(data)
    full = time.perf_counter() - started
    assert early < full / 5


def test_decode_within_the_limit_passes() -> None:
    data = encode(tone(seconds=2.0), SR, "mp3")
    assert decode(data, max_seconds=3.0).duration_seconds == pytest.approx(2.0, rel=0.05)


def test_flac_of_unknown_length_is_decoded_with_the_limit() -> None:
    data = bytearray(encode(tone(seconds=2.0), SR, "flac"))
    data[8 + 13] &= 0xF0  # STREAMINFO total_samples (36 bits) = 0: "unknown"
    data[8 + 14 : 8 + 18] = bytes(4)
    assert decode(bytes(data), max_seconds=60.0).duration_seconds == pytest.approx(2.0)
    with pytest.raises(AudioInputError) as err:
        decode(bytes(data), max_seconds=1.0)
    assert err.value.code == "too_long"
