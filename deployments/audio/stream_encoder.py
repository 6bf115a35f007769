"""One small stateful writer per audio stream: float32 PCM chunks in, encoded bytes out.

The same codec libraries as `codecs.encode` (numpy for wav/pcm, LAME for mp3, PyAV for opus,
aac and flac), kept open for the life of a stream so that each chunk is encoded as it comes
and its bytes can leave at once. Concatenating everything `write` and `close` return gives
one valid file:

- pcm: raw s16le; wav: a RIFF header whose sizes say "unknown" (0xFFFFFFFF, what players
  and decoders read as "until the end"), then s16le;
- mp3: CBR frames (LAME keeps up to one frame of samples between calls);
- opus: Ogg Opus, one page per 20 ms packet (the muxer's 1 s page buffering turned off);
- aac: ADTS frames (self-delimiting, 1024 samples each);
- flac: native FLAC whose STREAMINFO says "total samples unknown" (allowed by the format: a
  streaming encoder cannot seek back); decoders that read it as a stream (ffmpeg/PyAV, flac)
  play it, libsndfile's read-everything-at-once does not.

Resampling (a `sample_rate` other than the model's) is soxr's streaming resampler, so it is
real streaming DSP: no chunk-boundary artefacts, same samples as resampling the whole.
"""

from __future__ import annotations

import av
import lameenc
import numpy as np
import soxr

from .codecs import DEFAULT_BITRATE_KBPS, encoder_sample_rate, pcm16le, wav_header
from .formats import FORMAT_INFO, AudioFormat

__all__ = ["StreamEncoder"]

_PYAV = {
    AudioFormat.OPUS: ("ogg", "libopus", "flt", {"page_duration": "20000"}),
    AudioFormat.AAC: ("adts", "aac", "fltp", {}),
    AudioFormat.FLAC: ("flac", "flac", "s16", {}),
}


class _Buffer:
    """A write-only, non-seekable file for PyAV: collects what the muxer writes."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []

    def write(self, data: bytes) -> int:
        self._parts.append(bytes(data))
        return len(data)

    def take(self) -> bytes:
        out = b"".join(self._parts)
        self._parts.clear()
        return out


class StreamEncoder:
    """Encode one stream. `write(samples)` -> bytes ready to send (may be empty);
    `close()` -> the trailing bytes. Not thread-safe: one stream, one consumer."""

    def __init__(
        self,
        fmt: AudioFormat | str,
        input_sample_rate: int,
        *,
        sample_rate: int | None = None,
        bitrate_kbps: int | None = None,
    ) -> None:
        self.format = AudioFormat(fmt)
        self.content_type = FORMAT_INFO[self.format].content_type
        self.input_sample_rate = input_sample_rate
        self.sample_rate = encoder_sample_rate(self.format, sample_rate or input_sample_rate)
        self.num_samples = 0  # samples encoded so far, at `sample_rate`
        self._resampler = (
            soxr.ResampleStream(input_sample_rate, self.sample_rate, 1, dtype="float32",
                                quality="HQ")
            if self.sample_rate != input_sample_rate else None
        )
        kbps = bitrate_kbps or DEFAULT_BITRATE_KBPS.get(self.format, 0)
        self._header_sent = False
        self._closed = False
        self._mp3: lameenc.Encoder | None = None
        self._container: av.container.OutputContainer | None = None
        if self.format is AudioFormat.MP3:
            self._mp3 = lameenc.Encoder()
            self._mp3.set_bit_rate(kbps)
            self._mp3.set_in_sample_rate(self.sample_rate)
            self._mp3.set_out_sample_rate(self.sample_rate)
            self._mp3.set_channels(1)
            self._mp3.set_quality(5)
        elif self.format in _PYAV:
            container, codec, frame_format, options = _PYAV[self.format]
            self._buffer = _Buffer()
            self._container = av.open(self._buffer, mode="w", format=container, options=options)
            self._stream = self._container.add_stream(codec, rate=self.sample_rate, layout="mono")
            if kbps:
                self._stream.bit_rate = kbps * 1000
            self._frame_format = frame_format

    def write(self, samples: np.ndarray) -> bytes:
        """Encode the next float32 mono chunk (clipped to [-1, 1])."""
        if self._closed:
            raise RuntimeError("stream encoder is closed")
        x = np.clip(np.nan_to_num(np.asarray(samples, dtype=np.float32).reshape(-1)), -1.0, 1.0)
        if self._resampler is not None:
            x = self._resampler.resample_chunk(x, last=False)
        return self._encode(x)

    def close(self) -> bytes:
        """Flush the codec and the container; the bytes that end the file."""
        if self._closed:
            return b""
        tail = b""
        if self._resampler is not None:
            tail = self._encode(self._resampler.resample_chunk(np.zeros(0, np.float32), last=True))
        self._closed = True
        if self._mp3 is not None:
            return tail + bytes(self._mp3.flush())
        if self._container is not None:
            for packet in self._stream.encode(None):
                self._container.mux(packet)
            self._container.close()
            return tail + self._buffer.take()
        return tail + self._maybe_header()

    def abort(self) -> None:
        """Release the codec without finishing the file (the stream failed)."""
        self._closed = True
        if self._container is not None:
            try:
                self._container.close()
            except (av.FFmpegError, ValueError, OSError):
                pass

    # ------------------------------------------------------------------ internals
    def _maybe_header(self) -> bytes:
        if self.format is AudioFormat.WAV and not self._header_sent:
            self._header_sent = True
            return wav_header(self.sample_rate, None)
        return b""

    def _encode(self, x: np.ndarray) -> bytes:
        head = self._maybe_header()
        if x.size == 0:
            return head
        x = np.clip(x, -1.0, 1.0)
        self.num_samples += int(x.size)
        if self.format in (AudioFormat.PCM, AudioFormat.WAV):
            return head + pcm16le(x)
        if self._mp3 is not None:
            return bytes(self._mp3.encode(pcm16le(x)))
        assert self._container is not None
        if self._frame_format == "s16":
            data = np.frombuffer(pcm16le(x), dtype="<i2").reshape(1, -1)
        else:
            data = x.reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(data, format=self._frame_format, layout="mono")
        frame.sample_rate = self.sample_rate
        frame.pts = self.num_samples - x.size
        for packet in self._stream.encode(frame):
            self._container.mux(packet)
        return self._buffer.take()
