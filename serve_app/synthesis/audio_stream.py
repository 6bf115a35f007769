"""Streams on the ingress side: a model's float PCM, and the one encoder of each stream.

The model deployment yields float PCM (`AudioChunk`) through a streaming handle. A
`ModelStream` is that stream opened: its first chunk is awaited when it is opened, so every
request error (unknown speaker, a model that refuses the request, a full queue) is raised
before any response is started and maps to the usual 4xx/5xx JSON; after that, a failure
ends the stream (see the routes). Its end, however it comes, closes what the stream holds
(its admission, metering and in-flight slot: `release`).

Two consumers, each with one `StreamEncoder`: `AudioStream` (HTTP chunked audio or SSE, and
the handle API's `stream`) encodes one stream into `AudioStreamChunk`s; a speech session
writes the PCM of all its requests to its own output (serve_app.sessions.session_output).
Nothing is decoded and encoded again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import numpy as np

from deployments.audio import RenderOptions, StreamEncoder
from deployments.audio.marking import AIMark
from deployments.engine.types import AudioChunk
from serve_app.edge.api_errors import ApiError
from serve_app.protocol.speech import AudioStreamChunk, StreamUsage
from serve_app.protocol.timestamps import WordTimings
from serve_app.synthesis.metering import Usage

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


class ModelStream:
    """A model's stream of float PCM, opened: its first chunk has arrived. Iterate `chunks()`
    once; the audio handed out is reported to `usage` (what a cancelled stream is billed)."""

    model_kind: str = ""  # the deployment that speaks (set by SynthesisService.open_pcm)
    #: `timestamps: "word"` (set by SynthesisService.open_pcm): times the words of the
    #: stream's audio, given all of it; the stream keeps its samples for it
    timing: Callable[[np.ndarray, int], Awaitable[WordTimings]] | None = None

    def __init__(
        self,
        source: Any,  # DeploymentResponseGenerator of AudioChunk
        first: AudioChunk,
        request_id: str,
        started: float,
        idle_timeout_s: float,
        release: contextlib.AsyncExitStack,
        usage: Usage | None = None,
    ) -> None:
        self._source = source
        self._first = first
        self.request_id = request_id
        self.sample_rate = first.sample_rate
        self.started = started
        self._idle_timeout_s = idle_timeout_s
        self._release = release
        self._usage = usage or Usage()
        self.first_audio_seconds = time.perf_counter() - started
        self.audio_seconds = 0.0  # handed to the consumer so far
        self.completed = False  # the final chunk was delivered
        self._samples: list[np.ndarray] = []

    async def timings(self) -> WordTimings | None:
        """The words of the audio handed out so far (all of it once `completed`), when
        `timing` is set."""
        if self.timing is None:
            return None
        audio = (np.concatenate(self._samples) if self._samples
                 else np.zeros(0, dtype=np.float32))
        return await self.timing(audio, self.sample_rate)

    async def chunks(self) -> AsyncIterator[AudioChunk]:
        """The model's chunks, the last with final=True. On failure (or when the consumer
        stops early) the model stream is cancelled and the error re-raised; either way, what
        the stream holds is released once."""
        finished = False
        try:
            chunk: AudioChunk = self._first
            while True:
                self.audio_seconds += chunk.duration_seconds
                if self.timing is not None and len(chunk.audio):
                    self._samples.append(chunk.audio)
                self._usage.sent(self.audio_seconds)
                if chunk.final:
                    self._usage.ok(self.audio_seconds)
                    finished = self.completed = True
                yield chunk
                if finished:
                    return
                async with asyncio.timeout(self._idle_timeout_s):
                    chunk = await self._source.__anext__()
        except StopAsyncIteration:
            self._usage.failed()
            raise ApiError(500, "stream_incomplete",
                           f"The model stream ended early (request {self.request_id}).") from None
        except Exception:
            self._usage.failed()
            raise
        finally:
            if not finished:
                with contextlib.suppress(Exception):
                    self._source.cancel()
            await self._release.aclose()

    async def aclose(self) -> None:
        """Drop a stream that will not be iterated (e.g. the response could not start)."""
        self._usage.failed()
        with contextlib.suppress(Exception):
            self._source.cancel()
        await self._release.aclose()


async def open_model_stream(source: Any, request_id: str, started: float, timeout_s: float,
                            release: contextlib.AsyncExitStack,
                            usage: Usage | None = None) -> ModelStream:
    """Wait for the first chunk of `source` (errors raise here; the caller releases), then
    wrap it."""
    try:
        async with asyncio.timeout(timeout_s):
            first = await source.__anext__()
    except BaseException:
        with contextlib.suppress(Exception):
            source.cancel()
        raise
    return ModelStream(source, first, request_id, started, timeout_s, release, usage)


class AudioStream:
    """A model stream encoded in `output`'s format by its one StreamEncoder. Iterate
    `chunks()` once."""

    def __init__(self, pcm: ModelStream, output: RenderOptions) -> None:
        self._pcm = pcm
        self._encoder = StreamEncoder(output.format, pcm.sample_rate,
                                      sample_rate=output.sample_rate,
                                      bitrate_kbps=output.bitrate_kbps)
        self.request_id = pcm.request_id
        self.mark: AIMark | None = None  # the AI-generated mark its headers carry
        self.format = self._encoder.format
        self.content_type = self._encoder.content_type
        self.sample_rate = self._encoder.sample_rate

    @property
    def first_audio_seconds(self) -> float:
        return self._pcm.first_audio_seconds

    @property
    def completed(self) -> bool:
        return self._pcm.completed

    @property
    def audio_seconds(self) -> float:
        """Audio encoded so far (all of it once `completed`)."""
        return self._encoder.num_samples / self.sample_rate

    async def chunks(self) -> AsyncIterator[AudioStreamChunk]:
        """Encoded chunks, the last with final=True. On failure (or when the consumer stops
        early) the model stream is cancelled, the encoder dropped, and the error re-raised."""
        finished = False
        index = 0
        try:
            async with contextlib.aclosing(self._pcm.chunks()) as chunks:
                async for chunk in chunks:
                    data = self._encoder.write(chunk.audio)
                    if chunk.final:
                        data += self._encoder.close()
                        timings = await self._pcm.timings()
                        finished = True
                        yield self._piece(data, index, chunk, timings)
                        return
                    if data:
                        yield self._piece(data, index, chunk)
                        index += 1
        finally:
            if not finished:
                self._encoder.abort()

    def _piece(self, data: bytes, index: int, chunk: AudioChunk,
               timings: WordTimings | None = None) -> AudioStreamChunk:
        usage = None
        if chunk.final:
            usage = StreamUsage(input_tokens=chunk.input_tokens, output_tokens=chunk.total_frames,
                                total_tokens=chunk.input_tokens + chunk.total_frames)
        return AudioStreamChunk(
            audio=data, index=index, format=self.format, content_type=self.content_type,
            sample_rate=self.sample_rate,
            duration_seconds=self._encoder.num_samples / self.sample_rate,
            elapsed_seconds=time.perf_counter() - self._pcm.started,
            request_id=self.request_id, final=chunk.final, usage=usage,
            text_chars=chunk.text_chars, timings=timings,
        )

    async def aclose(self) -> None:
        """Drop a stream that will not be iterated (e.g. the response could not start)."""
        self._encoder.abort()
        await self._pcm.aclose()
