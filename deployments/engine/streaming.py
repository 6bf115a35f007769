"""Streaming synthesis: codec frames as the talker makes them, decoded to PCM chunk by chunk.

qwen-tts has no streaming output. Its talker runs HF `generate`, and every decode step's
forward returns `hidden_states=(layer_hiddens, codec_ids[B, 16])`: the 16-code frame decided
at that step. A forward hook on `model.talker` therefore sees each frame as it is made.
The 12 Hz speech decoder is causal, so a run of new frames decoded behind a left context of
earlier frames gives exactly the samples a whole-utterance decode gives for those frames
(the package's own `chunked_decode` relies on the same property).

One `StreamRunner` = one generation on its own thread, holding the model alone for the whole
generation (`TTSEngine.exclusive()`: torch's RNG and the model's modules are shared) and
running it through the engine's public `generate_reference`. The hook is
registered on a shared module, so it only acts on its own thread's forwards. Chunks are
decoded on that thread, right in the hook, and handed to a sink; `SynthesisStream` (blocking
iteration) and `AsyncSynthesisStream` (asyncio) are the two consumers. Cancelling sets a flag
the hook checks at every forward: the next frame raises `StreamCancelled` inside generate,
which unwinds the package's generation loop and frees the lock within one frame.

When the talker finishes, qwen-tts would decode the whole utterance once more; a forward
pre-hook on the decoder (again filtered by thread) stops it there, since every sample has
already been streamed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from deployments.engine.types import AudioChunk, EngineError, StreamCancelled, StreamChunking

if TYPE_CHECKING:
    from deployments.engine.engine import TTSEngine, _Prepared

log = logging.getLogger(__name__)

Sink = Callable[[AudioChunk | BaseException], None]


class _TalkerFinished(Exception):
    """Raised by the decoder pre-hook: generation is over, skip qwen-tts's own full decode."""


@dataclass
class StreamStats:
    """Counters of one engine's streaming work (read by the model server and tests)."""

    frames_generated: int = 0
    streams_started: int = 0
    streams_cancelled: int = 0
    active: int = 0


class IncrementalDecoder:
    """Codec frames in, PCM chunks out: a small first chunk, then `chunk_frames` at a time,
    each decoded behind up to `left_context_frames` earlier frames whose samples are dropped.

    `prefix` (T, 16) are frames that precede the output but are not part of it (the reference
    codes of an ICL voice clone, which qwen-tts decodes in front of the generated ones).
    """

    def __init__(
        self,
        decoder: torch.nn.Module,
        chunking: StreamChunking,
        samples_per_frame: int,
        prefix: torch.Tensor | None = None,
    ) -> None:
        self._decoder = decoder
        self._chunking = chunking
        self._spf = samples_per_frame
        self._codes: list[torch.Tensor] = list(prefix) if prefix is not None else []
        self._emitted = len(self._codes)
        self._chunks = 0
        self.busy = False  # True while this decoder runs (the pre-hook lets it through)

    @property
    def pending(self) -> int:
        return len(self._codes) - self._emitted

    def push(self, frame: torch.Tensor) -> np.ndarray | None:
        """Add one (16,) frame; returns a chunk when enough frames are pending."""
        self._codes.append(frame)
        want = self._chunking.first_chunk_frames if self._chunks == 0 else self._chunking.chunk_frames
        return self._decode() if self.pending >= want else None

    def flush(self) -> np.ndarray | None:
        return self._decode() if self.pending > 0 else None

    def _decode(self) -> np.ndarray:
        ctx = min(self._chunking.left_context_frames, self._emitted)
        window = torch.stack(self._codes[self._emitted - ctx:], dim=0)  # (T, 16)
        codes = torch.clamp(window, min=0).T.unsqueeze(0)  # (1, 16, T), as qwen-tts decodes
        self.busy = True
        try:
            wav = self._decoder(codes.to(self._decoder.device))
        finally:
            self.busy = False
        self._emitted = len(self._codes)
        self._chunks += 1
        return wav[0, 0, ctx * self._spf:].to(torch.float32).cpu().numpy()


class StreamRunner:
    """One streaming generation on its own thread; see the module docstring."""

    def __init__(
        self, engine: TTSEngine, prepared: _Prepared, chunking: StreamChunking, stats: StreamStats
    ) -> None:
        self._engine = engine
        self._prepared = prepared
        self._chunking = chunking
        self._stats = stats
        self._cancel = threading.Event()
        self._thread: threading.Thread | None = None
        self._thread_id: int | None = None
        self._sink: Sink | None = None
        self._decoder: IncrementalDecoder | None = None
        self._started_at = 0.0
        self._index = 0
        self.frames = 0

    @property
    def sample_rate(self) -> int:
        return self._engine.info.sample_rate

    def start(self, sink: Sink) -> None:
        if self._thread is not None:
            raise RuntimeError("a stream runs once")
        self._sink = sink
        self._started_at = time.perf_counter()
        self._thread = threading.Thread(target=self._run, name="qtts-stream", daemon=True)
        self._stats.streams_started += 1
        self._stats.active += 1
        self._thread.start()

    def cancel(self) -> None:
        """Stop generating at the next frame (non-blocking, idempotent)."""
        self._cancel.set()

    def join(self, timeout: float | None = None) -> bool:
        if self._thread is not None:
            self._thread.join(timeout)
            return not self._thread.is_alive()
        return True

    # ------------------------------------------------------------------ generation thread
    def _run(self) -> None:
        assert self._sink is not None
        self._thread_id = threading.get_ident()
        engine, p = self._engine, self._prepared
        try:
            with engine.exclusive():
                if self._cancel.is_set():
                    raise StreamCancelled()
                model = engine.model.model
                decoder = model.speech_tokenizer.model.decoder
                prefix = None
                if p.voice_prompt is not None and p.voice_prompt.icl_mode:
                    prefix = torch.as_tensor(np.asarray(p.voice_prompt.ref_code, dtype=np.int64))
                self._decoder = IncrementalDecoder(decoder, self._chunking,
                                                   engine.samples_per_frame, prefix)
                talker_hook = model.talker.register_forward_hook(self._on_talker_forward)
                decoder_hook = decoder.register_forward_pre_hook(self._on_decoder_call)
                try:
                    with contextlib.suppress(_TalkerFinished):
                        engine.generate_reference(p)
                finally:
                    talker_hook.remove()
                    decoder_hook.remove()
                tail = self._decoder.flush()
                # under the lock: HF fast tokenizers must not be used from two threads at once
                input_tokens = self._count_input_tokens()
            if self.frames == 0:
                raise EngineError("model produced empty audio")
            self._emit(tail if tail is not None else np.zeros(0, np.float32), final=True,
                       input_tokens=input_tokens)
        except StreamCancelled as exc:
            self._stats.streams_cancelled += 1
            self._sink(exc)
        except EngineError as exc:
            self._sink(exc)
        except Exception as exc:  # noqa: BLE001 - every failure reaches the consumer
            kind = engine.info.kind.value
            self._sink(EngineError(f"{kind} streaming generation failed: {type(exc).__name__}: {exc}"))
        finally:
            self._stats.active -= 1

    def _on_talker_forward(self, _module: Any, _args: Any, output: Any) -> None:
        if threading.get_ident() != self._thread_id:
            return  # another generation sharing the module
        if self._cancel.is_set():
            raise StreamCancelled()
        hidden = output.hidden_states if hasattr(output, "hidden_states") else output[3]
        codec_ids = hidden[1] if isinstance(hidden, tuple) else None
        if codec_ids is None:  # the prefill step decides no frame
            return
        self.frames += 1
        self._stats.frames_generated += 1
        assert self._decoder is not None
        wav = self._decoder.push(codec_ids[0].detach())
        if wav is not None:
            self._emit(wav)

    def _on_decoder_call(self, _module: Any, _args: Any) -> None:
        if threading.get_ident() == self._thread_id and self._decoder and not self._decoder.busy:
            raise _TalkerFinished()  # qwen-tts's own whole-utterance decode: already streamed

    def _emit(self, wav: np.ndarray, *, final: bool = False, input_tokens: int = 0) -> None:
        assert self._sink is not None and self._decoder is not None
        if not np.isfinite(wav).all():
            raise EngineError("model produced non-finite audio")
        frames = wav.size // self._engine.samples_per_frame
        chunk = AudioChunk(
            audio=np.ascontiguousarray(wav, dtype=np.float32), sample_rate=self.sample_rate,
            index=self._index, frames=frames, final=final, total_frames=self.frames,
            input_tokens=input_tokens, generation_seconds=time.perf_counter() - self._started_at,
        )
        self._index += 1
        self._sink(chunk)

    def _count_input_tokens(self) -> int:
        with contextlib.suppress(Exception):  # usage reporting only
            ids = self._engine.model.processor(text=self._prepared.text, return_tensors="pt")
            return int(ids["input_ids"].shape[-1])
        return 0


class SynthesisStream(Iterator[AudioChunk]):
    """Blocking iteration over a streaming synthesis (tests, benchmarks, plain Python).

    Ends after the chunk with `final=True`; raises the engine's error if generation failed.
    `close()` (or leaving a `with` block, or dropping out of a for loop and calling close)
    cancels the generation and waits for its thread.
    """

    def __init__(self, runner: StreamRunner) -> None:
        self._runner = runner
        self._queue: queue.Queue[AudioChunk | BaseException] = queue.Queue()
        self._done = False
        runner.start(self._queue.put)

    @property
    def frames(self) -> int:
        return self._runner.frames

    def __next__(self) -> AudioChunk:
        if self._done:
            raise StopIteration
        item = self._queue.get()
        if isinstance(item, BaseException):
            self._done = True
            raise item
        self._done = item.final
        return item

    def close(self, timeout: float | None = 30.0) -> None:
        self._runner.cancel()
        self._done = True
        self._runner.join(timeout)

    def __enter__(self) -> SynthesisStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncSynthesisStream(AsyncIterator[AudioChunk]):
    """Asyncio iteration: the generation thread hands chunks to the event loop, so waiting
    for the next chunk blocks no thread. `aclose()` (or cancellation of the consuming task
    followed by `aclose`) stops the generation at the next frame without waiting for it."""

    def __init__(self, runner: StreamRunner) -> None:
        self._runner = runner
        self._loop = asyncio.get_running_loop()
        self._queue: asyncio.Queue[AudioChunk | BaseException] = asyncio.Queue()
        self._done = False
        runner.start(self._from_thread)

    @property
    def frames(self) -> int:
        return self._runner.frames

    def _from_thread(self, item: AudioChunk | BaseException) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is gone: nobody is listening
            self._loop.call_soon_threadsafe(self._queue.put_nowait, item)

    async def __anext__(self) -> AudioChunk:
        if self._done:
            raise StopAsyncIteration
        item = await self._queue.get()
        if isinstance(item, BaseException):
            self._done = True
            raise item
        self._done = item.final
        return item

    def cancel(self) -> None:
        self._done = True
        self._runner.cancel()

    async def aclose(self) -> None:
        self.cancel()
