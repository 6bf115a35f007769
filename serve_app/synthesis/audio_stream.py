"""Streams on the ingress side: open a model stream, encode it per stream, hand out chunks.

The model deployment yields float PCM (`AudioChunk`) through a streaming handle; this module
turns that into encoded `AudioStreamChunk`s with one `StreamEncoder` per stream, which the
HTTP routes (chunked audio or SSE) and the handle API's streaming method both consume.

A stream is opened by awaiting its first chunk, so every request error (unknown speaker, a
model that refuses the request, a full queue) is raised before any response is started and
maps to the usual 4xx/5xx JSON. After that, a failure ends the stream (see the routes).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

from deployments.audio import RenderOptions, StreamEncoder
from deployments.engine.types import AudioChunk
from serve_app.edge.api_errors import ApiError
from serve_app.protocol.speech import AudioStreamChunk, StreamUsage

logger = logging.getLogger("qtts.streaming")


def check_stream_options(output: RenderOptions) -> None:
    """Refuse render options that need the whole utterance (400, naming the field).

    Speed and pitch change (WSOLA time-stretch, resample-and-stretch) and loudness targets are
    whole-buffer DSP here; streaming them chunk by chunk would change the sound at every
    boundary, so they are refused instead of being silently ignored. `sample_rate` streams
    (soxr's streaming resampler)."""
    for param, value, neutral in (("speed", output.speed, 1.0), ("pitch", output.pitch, 1.0),
                                  ("loudness_lufs", output.loudness_lufs, None)):
        if value != neutral:
            raise ApiError(
                400, "unsupported_while_streaming",
                f"{param}={value} is not available while streaming (it needs the whole "
                f"utterance); send {param}={neutral if neutral is not None else 'null'} or "
                "request the audio without streaming",
                param,
            )


class AudioStream:
    """An opened stream: its first model chunk has arrived. Iterate `chunks()` once."""

    def __init__(
        self,
        source: Any,  # DeploymentResponseGenerator of AudioChunk
        first: AudioChunk,
        output: RenderOptions,
        request_id: str,
        started: float,
        idle_timeout_s: float,
        release: contextlib.ExitStack,
    ) -> None:
        self._source = source
        self._first = first
        self._encoder = StreamEncoder(output.format, first.sample_rate,
                                      sample_rate=output.sample_rate,
                                      bitrate_kbps=output.bitrate_kbps)
        self.request_id = request_id
        self.format = self._encoder.format
        self.content_type = self._encoder.content_type
        self.sample_rate = self._encoder.sample_rate
        self._started = started
        self._idle_timeout_s = idle_timeout_s
        self._release = release
        self.first_audio_seconds = time.perf_counter() - started
        self.completed = False  # the final chunk was delivered

    @property
    def audio_seconds(self) -> float:
        """Audio encoded so far (all of it once `completed`)."""
        return self._encoder.num_samples / self.sample_rate

    async def chunks(self) -> AsyncIterator[AudioStreamChunk]:
        """Encoded chunks, the last with final=True. On failure (or when the consumer stops
        early) the model stream is cancelled, the encoder dropped, and the error re-raised."""
        finished = False
        try:
            chunk: AudioChunk = self._first
            index = 0
            while True:
                data = self._encoder.write(chunk.audio)
                if chunk.final:
                    data += self._encoder.close()
                    finished = True
                    self.completed = True
                    yield self._piece(data, index, chunk)
                    return
                if data:
                    yield self._piece(data, index, chunk)
                    index += 1
                chunk = await asyncio.wait_for(self._source.__anext__(), self._idle_timeout_s)
        except StopAsyncIteration:
            raise ApiError(500, "stream_incomplete",
                           f"The model stream ended early (request {self.request_id}).") from None
        finally:
            if not finished:
                self._encoder.abort()
                with contextlib.suppress(Exception):
                    self._source.cancel()
            self._release.close()

    def _piece(self, data: bytes, index: int, chunk: AudioChunk) -> AudioStreamChunk:
        usage = None
        if chunk.final:
            usage = StreamUsage(input_tokens=chunk.input_tokens, output_tokens=chunk.total_frames,
                                total_tokens=chunk.input_tokens + chunk.total_frames)
        return AudioStreamChunk(
            audio=data, index=index, format=self.format, content_type=self.content_type,
            sample_rate=self.sample_rate,
            duration_seconds=self._encoder.num_samples / self.sample_rate,
            elapsed_seconds=time.perf_counter() - self._started,
            request_id=self.request_id, final=chunk.final, usage=usage,
            text_chars=chunk.text_chars,
        )

    async def aclose(self) -> None:
        """Drop a stream that will not be iterated (e.g. the response could not start)."""
        self._encoder.abort()
        with contextlib.suppress(Exception):
            self._source.cancel()
        self._release.close()


async def open_stream(
    source: Any,
    output: RenderOptions,
    request_id: str,
    started: float,
    timeout_s: float,
    release: contextlib.ExitStack,
) -> AudioStream:
    """Wait for the first model chunk of `source` (errors raise here), then wrap it."""
    try:
        first = await asyncio.wait_for(source.__anext__(), timeout_s)
    except BaseException:
        with contextlib.suppress(Exception):
            source.cancel()
        release.close()
        raise
    return AudioStream(source, first, output, request_id, started, timeout_s, release)
