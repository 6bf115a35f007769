"""In-process audio codecs: encode float32 mono PCM to every output format, decode uploads.

No subprocess and no ffmpeg binary: wav/pcm are packed with numpy, flac goes through
soundfile (libsndfile), mp3 through lameenc (LAME), opus and aac through PyAV (libav*).
`decode` sniffs the container from its magic bytes and opens only an allow-listed demuxer,
so untrusted uploads never reach playlist/concat demuxers that could open other files.
"""

from __future__ import annotations

import io
import struct
from dataclasses import dataclass

import av
import lameenc
import numpy as np
import soundfile as sf
import soxr

from .errors import AudioInputError
from .formats import OPUS_SAMPLE_RATES, AudioFormat

__all__ = [
    "ACCEPTED_UPLOAD_FORMATS",
    "DEFAULT_BITRATE_KBPS",
    "DecodedAudio",
    "decode",
    "encode",
    "encoder_sample_rate",
    "parse_format",
    "pcm16le",
    "wav_header",
]

#: Human-readable list of the upload formats `decode` accepts (used in error messages and docs).
ACCEPTED_UPLOAD_FORMATS = (
    "wav",
    "flac",
    "mp3",
    "ogg (vorbis, opus)",
    "m4a/mp4 (aac)",
    "aac (adts)",
    "webm/mka (opus, vorbis)",
    "aiff",
)

#: Bitrate used for the lossy formats when the caller gives none.
DEFAULT_BITRATE_KBPS: dict[AudioFormat, int] = {
    AudioFormat.MP3: 128,
    AudioFormat.OPUS: 64,
    AudioFormat.AAC: 128,
}

#: MPEG-1/2/2.5 layer III sample rates (LAME would otherwise pick its own output rate).
MP3_SAMPLE_RATES = (8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000)
#: Sample rates an ADTS header can signal (frequency index table of ISO 14496-3).
AAC_SAMPLE_RATES = (7350, 8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000, 64000,
                    88200, 96000)

_UNREADABLE_HINT = "accepted formats: " + ", ".join(ACCEPTED_UPLOAD_FORMATS)


@dataclass(frozen=True)
class DecodedAudio:
    """Decoded audio: float32 samples shaped (channels, n) at `sample_rate`."""

    samples: np.ndarray
    sample_rate: int

    @property
    def channels(self) -> int:
        return int(self.samples.shape[0])

    @property
    def duration_seconds(self) -> float:
        return self.samples.shape[1] / self.sample_rate if self.sample_rate else 0.0


# --------------------------------------------------------------------------------------------
# encode


def parse_format(fmt: AudioFormat | str) -> AudioFormat:
    """`fmt` as an AudioFormat; an unknown name is the client's `response_format` error."""
    if isinstance(fmt, AudioFormat):
        return fmt
    try:
        return AudioFormat(str(fmt).lower())
    except ValueError:
        accepted = ", ".join(f.value for f in AudioFormat)
        raise AudioInputError(
            "invalid_option",
            f"response_format {fmt!r} is not supported; use one of: {accepted}",
            param="response_format",
        ) from None


def encoder_sample_rate(fmt: AudioFormat | str, sample_rate: int) -> int:
    """The sample rate `encode` actually writes for `fmt` given input at `sample_rate`.

    opus: libopus rates only, anything else becomes 48 kHz. mp3/aac: the smallest standard
    rate at or above the input (48 kHz at most). wav/pcm/flac: unchanged.
    """
    fmt = parse_format(fmt)
    if fmt is AudioFormat.OPUS:
        return sample_rate if sample_rate in OPUS_SAMPLE_RATES else 48000
    if fmt is AudioFormat.MP3:
        return _smallest_at_or_above(MP3_SAMPLE_RATES, sample_rate)
    if fmt is AudioFormat.AAC:
        return _smallest_at_or_above(tuple(r for r in AAC_SAMPLE_RATES if r <= 48000),
                                     sample_rate)
    return sample_rate


def _smallest_at_or_above(rates: tuple[int, ...], sample_rate: int) -> int:
    for rate in rates:
        if rate >= sample_rate:
            return rate
    return rates[-1]


def _as_mono_float32(samples: np.ndarray) -> np.ndarray:
    x = np.asarray(samples, dtype=np.float32)
    if x.ndim == 2 and x.shape[0] == 1:
        x = x[0]
    if x.ndim != 1:
        raise ValueError(f"encode expects mono 1-D samples, got shape {x.shape}")
    x = np.nan_to_num(x, nan=0.0, posinf=1.0, neginf=-1.0)
    return np.clip(x, -1.0, 1.0)


def pcm16le(samples: np.ndarray) -> bytes:
    """float32 mono in [-1, 1] (clipped) as raw signed 16-bit little-endian bytes."""
    x = _as_mono_float32(samples)
    return np.round(x * 32767.0).astype("<i2").tobytes()


def wav_header(sample_rate: int, num_samples: int | None) -> bytes:
    """A 44-byte RIFF header for 16-bit mono PCM; `num_samples=None` for a stream of unknown
    length (sizes set to 0xFFFFFFFF, which common players read as "until the end")."""
    if num_samples is None:
        data_size = riff_size = 0xFFFFFFFF
    else:
        data_size = num_samples * 2
        riff_size = 36 + data_size
    return struct.pack(
        "<4sI4s4sIHHIIHH4sI",
        b"RIFF", riff_size, b"WAVE",
        b"fmt ", 16, 1, 1, sample_rate, sample_rate * 2, 2, 16,
        b"data", data_size,
    )


def encode(
    samples: np.ndarray,
    sample_rate: int,
    fmt: AudioFormat | str,
    *,
    bitrate_kbps: int | None = None,
) -> bytes:
    """Encode float32 mono samples (clipped to [-1, 1]) as a complete file in `fmt`.

    wav: 16-bit PCM RIFF; pcm: raw s16le; flac: 16-bit; mp3: CBR (LAME); opus: Ogg Opus;
    aac: ADTS AAC-LC. Rates a codec cannot carry are resampled first (see
    `encoder_sample_rate`). `bitrate_kbps` applies to mp3/opus/aac only.
    """
    fmt = parse_format(fmt)
    if sample_rate <= 0:
        raise ValueError(f"sample_rate must be positive, got {sample_rate}")
    x = _as_mono_float32(samples)
    rate = encoder_sample_rate(fmt, sample_rate)
    if rate != sample_rate:
        x = np.clip(soxr.resample(x, sample_rate, rate, quality="HQ"), -1.0, 1.0)
    kbps = bitrate_kbps or DEFAULT_BITRATE_KBPS.get(fmt, 0)
    if fmt is AudioFormat.PCM:
        return pcm16le(x)
    if fmt is AudioFormat.WAV:
        return wav_header(rate, x.shape[0]) + pcm16le(x)
    if fmt is AudioFormat.FLAC:
        buf = io.BytesIO()
        # From int16 so that flac holds exactly the samples wav/pcm would (same quantisation).
        sf.write(buf, np.frombuffer(pcm16le(x), dtype="<i2"), rate, format="FLAC",
                 subtype="PCM_16")
        return buf.getvalue()
    if fmt is AudioFormat.MP3:
        return _encode_mp3(x, rate, kbps)
    if fmt is AudioFormat.OPUS:
        return _encode_pyav(x, rate, codec="libopus", container="ogg", kbps=kbps)
    return _encode_pyav(x, rate, codec="aac", container="adts", kbps=kbps)


def _encode_mp3(x: np.ndarray, rate: int, kbps: int) -> bytes:
    enc = lameenc.Encoder()
    enc.set_bit_rate(kbps)
    enc.set_in_sample_rate(rate)
    enc.set_out_sample_rate(rate)  # otherwise LAME may downsample at low bitrates
    enc.set_channels(1)
    enc.set_quality(5)  # LAME's "good" default: ~4x faster than 2, transparent for speech
    return bytes(enc.encode(pcm16le(x))) + bytes(enc.flush())


def _encode_pyav(x: np.ndarray, rate: int, *, codec: str, container: str, kbps: int) -> bytes:
    buf = io.BytesIO()
    with av.open(buf, mode="w", format=container) as out:
        stream = out.add_stream(codec, rate=rate, layout="mono")
        stream.bit_rate = kbps * 1000
        frame_format = "flt" if codec == "libopus" else "fltp"
        frame = av.AudioFrame.from_ndarray(x.reshape(1, -1), format=frame_format, layout="mono")
        frame.sample_rate = rate
        frame.pts = 0
        # PyAV re-chunks the frame into the codec's frame size (20 ms opus, 1024-sample aac).
        for packet in stream.encode(frame):
            out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return buf.getvalue()


# --------------------------------------------------------------------------------------------
# decode


def _sniff(data: bytes) -> str | None:
    """Container of `data` from its magic bytes: a soundfile/PyAV format name, or None."""
    head = data[:16]
    if head[:4] in (b"RIFF", b"RF64") and head[8:12] == b"WAVE":
        return "wav"
    if head[:4] == b"fLaC":
        return "flac"
    if head[:4] == b"FORM" and head[8:12] in (b"AIFF", b"AIFC"):
        return "aiff"
    if head[:4] == b"OggS":
        return "ogg"
    if head[4:8] == b"ftyp":
        return "mp4"
    if head[:4] == b"\x1a\x45\xdf\xa3":
        return "matroska"
    if head[:3] == b"ID3" and len(data) >= 10:
        # ID3v2 tag: 4 syncsafe size bytes; what follows the tag decides (flac, aac or mp3).
        size = (data[6] << 21) | (data[7] << 14) | (data[8] << 7) | data[9]
        inner = _sniff(data[10 + size:])
        return inner if inner in ("flac", "aac") else "mp3"
    if len(head) >= 2 and head[0] == 0xFF:
        if head[1] & 0xF6 == 0xF0:  # 12-bit sync + layer 00: ADTS
            return "aac"
        if head[1] & 0xE0 == 0xE0 and head[1] & 0x06:  # 11-bit sync + layer I/II/III
            return "mp3"
    return None


def _unreadable(subject: str, why: str) -> AudioInputError:
    return AudioInputError("unreadable", f"{subject} could not be decoded ({why}); "
                           f"{_UNREADABLE_HINT}")


def _too_long(subject: str, max_seconds: float, seconds: float | None,
              param: str | None) -> AudioInputError:
    if seconds is not None and seconds > max_seconds:
        what = f"{subject} is {seconds:.1f} s long"
    else:
        what = f"{subject} is longer than {max_seconds:g} s"
    return AudioInputError("too_long", f"{what}; at most {max_seconds:g} s is allowed",
                           param=param)


def decode(
    data: bytes,
    *,
    max_seconds: float | None = None,
    param: str | None = None,
) -> DecodedAudio:
    """Decode an uploaded audio file in-process to float32 (channels, n).

    Raises AudioInputError: "empty" for no bytes, "unreadable" for anything that is not one
    of ACCEPTED_UPLOAD_FORMATS with at least one decodable sample, "too_long" as soon as the
    decoded length passes `max_seconds` (decoding stops there). `param` names the request
    field in messages and on the error.
    """
    subject = param or "audio"
    if not data:
        raise AudioInputError("empty", f"{subject} is empty", param=param)
    container = _sniff(data)
    if container is None:
        raise _with_param(_unreadable(subject, "unknown container"), param)
    try:
        if container in ("wav", "flac", "aiff"):
            decoded = _decode_soundfile(data, max_seconds, subject, param)
            if decoded is not None:
                return decoded
        return _decode_pyav(data, container, max_seconds, subject, param)
    except AudioInputError as exc:
        raise _with_param(exc, param) from None


def _with_param(exc: AudioInputError, param: str | None) -> AudioInputError:
    if exc.param is None and param is not None:
        exc.param = param
    return exc


def _finish(samples: np.ndarray, sample_rate: int, subject: str) -> DecodedAudio:
    if samples.shape[1] == 0:
        raise _unreadable(subject, "no audio samples")
    samples = np.nan_to_num(samples.astype(np.float32, copy=False), nan=0.0, posinf=0.0,
                            neginf=0.0)
    return DecodedAudio(samples=np.ascontiguousarray(samples), sample_rate=sample_rate)


def _decode_soundfile(data: bytes, max_seconds: float | None, subject: str,
                      param: str | None) -> DecodedAudio | None:
    """libsndfile fast path for wav/flac/aiff; None when it cannot read the file (then PyAV
    gets a go, e.g. for codecs inside WAV that libsndfile lacks)."""
    try:
        with sf.SoundFile(io.BytesIO(data)) as f:
            if f.samplerate <= 0 or f.channels <= 0 or not 0 < f.frames < 2**40:
                return None  # e.g. a FLAC stream of unknown length: PyAV decodes with a limit
            if max_seconds is not None and f.frames / f.samplerate > max_seconds:
                raise _too_long(subject, max_seconds, f.frames / f.samplerate, param)
            samples = f.read(dtype="float32", always_2d=True).T
            rate = f.samplerate
    except AudioInputError:
        raise
    except (sf.LibsndfileError, RuntimeError, ValueError, TypeError):
        return None
    return _finish(samples, rate, subject)


def _decode_pyav(data: bytes, container: str, max_seconds: float | None, subject: str,
                 param: str | None) -> DecodedAudio:
    try:
        box = av.open(io.BytesIO(data), mode="r", format=container)
    except (av.FFmpegError, ValueError, OSError) as exc:
        raise _unreadable(subject, f"not a valid {container} file") from exc
    with box:
        if not box.streams.audio:
            raise _unreadable(subject, "no audio stream")
        stream = box.streams.audio[0]
        rate = stream.codec_context.sample_rate or stream.rate or 0
        estimate = box.duration / 1e6 if box.duration else None
        limit = None
        chunks: list[np.ndarray] = []
        total = 0
        resampler: av.AudioResampler | None = None
        try:
            for frame in box.decode(stream):
                if resampler is None:
                    rate = frame.sample_rate or rate
                    if rate <= 0:
                        raise _unreadable(subject, "no sample rate")
                    resampler = av.AudioResampler(format="fltp", layout=frame.layout.name,
                                                  rate=rate)
                    if max_seconds is not None:
                        limit = int(max_seconds * rate)
                for out in resampler.resample(frame):
                    chunk = out.to_ndarray()
                    chunks.append(chunk)
                    total += chunk.shape[1]
                if limit is not None and total > limit:
                    raise _too_long(subject, max_seconds or 0.0, estimate, param)
            if resampler is not None:
                for out in resampler.resample(None):
                    chunks.append(out.to_ndarray())
        except AudioInputError:
            raise
        except (av.FFmpegError, ValueError) as exc:
            raise _unreadable(subject, "decoder error") from exc
    if not chunks:
        raise _unreadable(subject, "no audio samples")
    samples = np.concatenate(chunks, axis=1)
    if limit is not None and samples.shape[1] > limit:
        raise _too_long(subject, max_seconds or 0.0, estimate, param)
    return _finish(samples, rate, subject)
