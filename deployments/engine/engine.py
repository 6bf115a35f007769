"""TTSEngine: one loaded Qwen3-TTS checkpoint (any kind) behind a small, typed, thread-safe API.

No Ray here: the model-server deployment wraps this class, and tests and benchmarks use it
directly. A facade: validation (`validation`), the batched backend (`step_loop` and the parts
under it) and the reference backend (`reference`) do the work. Every request is validated
against what the checkpoint declares before the model runs, so a caller's mistake is an
`UnsupportedValueError` (4xx) and never reaches qwen-tts; anything the model raises after
that is an `EngineError` (5xx).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import threading
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from deployments.engine.loading import import_qwen_tts, resolve_attn, resolve_device, resolve_dtype
from deployments.engine.memory import MemoryPlan, plan_memory
from deployments.engine.reference import ReferenceBackend, ReferenceStreamRunner
from deployments.engine.request import Job, StreamStats
from deployments.engine.step_loop import LoopStreamRunner, StepLoop
from deployments.engine.streaming import AsyncSynthesisStream, StreamRunner, SynthesisStream
from deployments.engine.text_input import TextInput
from deployments.engine.types import (
    MODEL_SAMPLE_RATE,
    EngineConfig,
    EngineError,
    ModelInfo,
    ModelKind,
    StepObserver,
    StreamChunking,
    SynthesisRequest,
    SynthesisResult,
    UnsupportedValueError,
    VoicePrompt,
)
from deployments.engine.validation import RequestValidator

log = logging.getLogger(__name__)

_MIN_REFERENCE_SECONDS = 0.5
#: Steps per batch size that calibrate the pacer's step model at start-up (an exponential
#: average: the first, coldest interval weighs about 10% after a dozen)
CALIBRATION_FRAMES = 12


class TTSEngine:
    """A loaded checkpoint. Use `TTSEngine.load(config)`; all methods are thread-safe.

    `config.backend` picks the generation path: "batched" (default) runs every request in
    the model's step loop; "reference" runs qwen-tts's stock generate behind one lock, kept
    as what parity tests compare against.
    """

    def __init__(self, tts: Any, config: EngineConfig, *, device: str, dtype: torch.dtype) -> None:
        self._tts = tts
        self._config = config
        self._device = device
        self._lock = threading.Lock()
        self.stream_stats = StreamStats()
        model_cfg = tts.model.config
        talker = model_cfg.talker_config
        try:
            kind = ModelKind(str(model_cfg.tts_model_type))
        except ValueError as e:
            raise EngineError(f"unknown tts_model_type {model_cfg.tts_model_type!r}") from e
        st = tts.model.speech_tokenizer
        self.info = ModelInfo(
            kind=kind,
            model=config.model,
            speakers=tuple(s.lower() for s in (tts.get_supported_speakers() or [])),
            dialect_speakers={
                str(s).lower(): str(d) for s, d in (talker.spk_is_dialect or {}).items() if d
            },
            languages=tuple(s.lower() for s in (tts.get_supported_languages() or [])),
            sample_rate=int(st.get_output_sample_rate()),
            device=device,
            dtype=str(dtype).removeprefix("torch."),
            model_size=str(model_cfg.tts_model_size),
        )
        self.samples_per_frame = int(st.get_decode_upsample_rate())
        ckpt_default = (tts.generate_defaults or {}).get("max_new_tokens")
        self.default_max_new_tokens = min(int(ckpt_default or config.max_new_tokens),
                                          config.max_new_tokens)
        self._validator = RequestValidator(
            self.info, config, generate_defaults=tts.generate_defaults,
            default_max_new_tokens=self.default_max_new_tokens,
            codebook_size=int(talker.code_predictor_config.vocab_size),
            num_code_groups=int(talker.num_code_groups),
            speaker_embedding_dim=(int(model_cfg.speaker_encoder_config.enc_dim)
                                   if kind is ModelKind.BASE else 0))
        self._reference = ReferenceBackend(
            tts, config, kind=kind, sample_rate=self.info.sample_rate,
            samples_per_frame=self.samples_per_frame, device=device, dtype=dtype, lock=self._lock)
        self._loop: StepLoop | None = None
        self.memory_plan: MemoryPlan | None = None
        if config.backend == "batched":
            self.memory_plan = plan_memory(tts, config, device)
            log.info("memory plan: %s", self.memory_plan.summary())
            self.info = dataclasses.replace(self.info, memory_plan=self.memory_plan.as_dict())
            self._loop = StepLoop(tts, config, sample_rate=self.info.sample_rate,
                                  samples_per_frame=self.samples_per_frame,
                                  stats=self.stream_stats, slots=self.memory_plan.slots,
                                  context=self.memory_plan.context_tokens)

    @property
    def backend(self) -> str:
        return self._config.backend

    @property
    def loop(self) -> StepLoop | None:
        """The step loop (batched backend; None for the reference backend)."""
        return self._loop

    @property
    def config(self) -> EngineConfig:
        return self._config

    @property
    def model(self) -> Any:
        """The underlying `qwen_tts.Qwen3TTSModel` (for streaming hooks and benchmarks)."""
        return self._tts

    def set_observer(self, observer: StepObserver) -> None:
        """Metrics hooks of the step loop (batched backend; a no-op otherwise)."""
        if self._loop is not None:
            self._loop.observer = observer

    def close(self) -> None:
        """Stop the step loop (pending requests fail with EngineError)."""
        if self._loop is not None:
            self._loop.close()

    @classmethod
    def load(cls, config: EngineConfig) -> TTSEngine:
        """Load `config.model` (hub id or local dir) and warm it up if `config.warmup`."""
        device = resolve_device(config.device)
        dtype = resolve_dtype(config.dtype, device)
        attn = resolve_attn(config.attn_implementation, device)
        if config.num_threads:
            torch.set_num_threads(config.num_threads)
        qwen_tts = import_qwen_tts()
        t0 = time.perf_counter()
        try:
            tts = qwen_tts.Qwen3TTSModel.from_pretrained(
                config.model, device_map=device, dtype=dtype, attn_implementation=attn
            )
        except Exception as e:
            raise EngineError(f"could not load Qwen3-TTS model {config.model!r}: {e}") from e
        engine = cls(tts, config, device=device, dtype=dtype)
        log.info("loaded %s (%s, %s) on %s/%s in %.1fs", config.model, engine.info.kind.value,
                 engine.info.model_size, device, engine.info.dtype, time.perf_counter() - t0)
        if config.warmup:
            engine.warmup()
        return engine

    # ------------------------------------------------------------------ synthesis
    def validate(self, request: SynthesisRequest) -> None:
        """Raise `UnsupportedValueError` (naming the field and the allowed values) if this
        checkpoint cannot synthesize `request`."""
        self._validator.prepare(request)

    def synthesize(self, requests: Sequence[SynthesisRequest]) -> list[SynthesisResult]:
        """Synthesize `requests` (results in request order). All are validated first.

        Batched backend: every request joins the step loop (raises EngineOverloadedError,
        queueing none of them, when slots and wait queue are full). Reference backend: see
        `ReferenceBackend.synthesize`.
        """
        prepared = [self._validator.prepare(r) for r in requests]
        if self._loop is None:
            return self._reference.synthesize(prepared)
        jobs = [Job(p, chunking=None) for p in prepared]
        try:
            for job in jobs:
                self._loop.submit(job)
            return [job.wait() for job in jobs]
        finally:
            if not all(job.done.is_set() for job in jobs):
                for job in jobs:
                    job.cancel()
                self._loop.wake()

    async def asynthesize(self, request: SynthesisRequest) -> SynthesisResult:
        """One synthesis from async code without holding a thread: with the batched backend
        the request waits in the step loop, and cancelling the awaiting task frees its slot
        within one step."""
        if self._loop is None:
            return (await asyncio.to_thread(self.synthesize, [request]))[0]
        prepared = self._validator.prepare(request)
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()

        def wake(_job: Job) -> None:
            with contextlib.suppress(RuntimeError):  # the event loop is gone
                loop.call_soon_threadsafe(lambda: future.done() or future.set_result(None))

        job = Job(prepared, chunking=None)
        job.add_done_callback(wake)
        self._loop.submit(job)
        try:
            await future
        finally:
            if not job.done.is_set():
                job.cancel()
                self._loop.wake()
        return job.wait(0)

    # ------------------------------------------------------------------ streaming
    def stream(self, request: SynthesisRequest,
               chunking: StreamChunking | None = None) -> SynthesisStream:
        """Start a streaming synthesis of `request` (validated here: a bad request raises
        before anything runs). Iterate the result for `AudioChunk`s (blocking) or use
        `astream` from async code."""
        return SynthesisStream(self._stream_runner(request, chunking))

    def astream(self, request: SynthesisRequest,
                chunking: StreamChunking | None = None) -> AsyncSynthesisStream:
        """`stream` for asyncio consumers: chunks arrive without blocking the event loop."""
        return AsyncSynthesisStream(self._stream_runner(request, chunking))

    def astream_text(self, request: SynthesisRequest, text: TextInput,
                     chunking: StreamChunking | None = None) -> AsyncSynthesisStream:
        """Stream a synthesis whose text is still arriving: append to `text` as it comes and
        close it when it is complete (`request.text` is ignored). The request runs in
        streaming-text mode in one step-loop slot, admitted once the prompt's text has
        settled; its slot waits for text (holding its cache, taking no step time) instead of
        reading past what has arrived. With the whole text given at once the codes equal
        those of `request` with `streaming_text=True` (greedy). Batched backend only."""
        if self._loop is None:
            raise UnsupportedValueError(
                "backend", self._config.backend, ["batched"],
                "text that is still arriving needs the batched backend (engine.backend: batched)")
        prepared = self._validator.prepare(request, arriving=True)
        return AsyncSynthesisStream(LoopStreamRunner(
            self._loop, prepared, chunking or StreamChunking(), self.info.sample_rate, text))

    def _stream_runner(self, request: SynthesisRequest,
                       chunking: StreamChunking | None) -> StreamRunner:
        prepared = self._validator.prepare(request)
        chunking = chunking or StreamChunking()
        if self._loop is not None:
            return LoopStreamRunner(self._loop, prepared, chunking, self.info.sample_rate)
        return ReferenceStreamRunner(self._reference, prepared, chunking, self.stream_stats)

    # ------------------------------------------------------------------ voice prompts
    def build_voice_prompt(
        self,
        audio: np.ndarray,
        sample_rate: int,
        *,
        ref_text: str | None = None,
        x_vector_only: bool = False,
    ) -> VoicePrompt:
        """A reusable clone prompt from decoded mono float audio (Base checkpoints only).

        Only an ndarray + int rate is accepted: qwen-tts would fetch a URL or open a path
        given as a string, so user strings never reach it.
        """
        if not isinstance(audio, np.ndarray):
            raise TypeError(f"audio must be a numpy array of samples, not {type(audio).__name__}")
        if isinstance(sample_rate, bool) or not isinstance(sample_rate, int | np.integer):
            raise TypeError(f"sample_rate must be an int, not {type(sample_rate).__name__}")
        if not np.issubdtype(audio.dtype, np.floating):
            raise TypeError(f"audio must hold float samples in [-1, 1], not {audio.dtype}")
        if self.info.kind is not ModelKind.BASE:
            raise UnsupportedValueError(
                "reference_audio", "<audio>", [],
                f"a {self.info.kind.value} checkpoint cannot clone voices: use a base model",
            )
        sr = int(sample_rate)
        if not 8_000 <= sr <= 192_000:
            raise UnsupportedValueError("sample_rate", sr, [], "sample_rate must be 8000..192000")
        if audio.ndim != 1:
            raise UnsupportedValueError("reference_audio", f"shape {audio.shape}", [],
                                        "reference audio must be mono (1-D)")
        if audio.size < _MIN_REFERENCE_SECONDS * sr or not np.isfinite(audio).all():
            raise UnsupportedValueError(
                "reference_audio", f"{audio.size / sr:.2f}s", [],
                f"reference audio must be finite and at least {_MIN_REFERENCE_SECONDS}s long",
            )
        text = ref_text.strip() if isinstance(ref_text, str) else None
        if not x_vector_only and not text:
            raise UnsupportedValueError(
                "ref_text", ref_text, [],
                "ICL voice cloning needs ref_text (the transcript of the reference audio); "
                "either give ref_text or set x_vector_only to clone from the voice alone",
            )
        wav = np.ascontiguousarray(audio, dtype=np.float32)
        with self._lock, torch.inference_mode():
            try:
                items = self._tts.create_voice_clone_prompt(
                    ref_audio=(wav, sr), ref_text=None if x_vector_only else text,
                    x_vector_only_mode=bool(x_vector_only),
                )
            except Exception as e:
                raise EngineError(f"voice prompt failed: {type(e).__name__}: {e}") from e
        item = items[0]
        code = None
        if item.ref_code is not None and not x_vector_only:
            code = item.ref_code.detach().to("cpu", torch.int64).numpy()
        return VoicePrompt(
            ref_spk_embedding=item.ref_spk_embedding.detach().to("cpu", torch.float32).numpy(),
            ref_code=code,
            ref_text=None if x_vector_only else text,
            x_vector_only_mode=bool(x_vector_only),
        )

    # ------------------------------------------------------------------ warmup
    def calibrate_pacing(self, request: SynthesisRequest,
                         frames: int = CALIBRATION_FRAMES) -> None:
        """Pacing: measure the step loop's cadence at one row and at every slot before the
        first request (`frames` steps each, `request` with a forced length, after the
        warm-up's cold steps), so admission's projection interpolates between measured batch
        sizes (without it the projection extrapolated a one-row step per row, and a burst of
        16 streams on an idle 16-slot replica had 13 refused with 3 running). Admission is
        open while it runs (start-up: nothing else is in the loop). About 0.7 s on the tiny
        CPU checkpoints. A no-op without pacing or with one slot."""
        loop = self._loop
        if loop is None or not loop.pacer.enabled or loop.capacity <= 1:
            return
        pacer = loop.pacer
        bound, pacer.bound_s = pacer.bound_s, None  # a whole batch in one admission pass
        try:
            for rows in (1, loop.capacity):
                self.synthesize([dataclasses.replace(request, seed=i, min_frames=frames,
                                                     max_new_tokens=frames + 1)
                                 for i in range(rows)])
        finally:
            pacer.bound_s = bound
        log.info("pacing calibrated: %.1f ms per step at %d rows, %.1f ms at 1",
                 1000 * (pacer.steps.estimate(loop.capacity) or 0), loop.capacity,
                 1000 * (pacer.steps.estimate(1) or 0))

    def warmup(self) -> None:
        """One short synthesis (4 tokens) so the first real request pays no lazy init."""
        t0 = time.perf_counter()
        kind = self.info.kind
        req = SynthesisRequest(text="Hello.", max_new_tokens=4, seed=0)
        if kind is ModelKind.CUSTOM_VOICE:
            req = SynthesisRequest(text="Hello.", speaker=self.info.speakers[0],
                                   max_new_tokens=4, seed=0)
        elif kind is ModelKind.VOICE_DESIGN:
            req = SynthesisRequest(text="Hello.", instruct="A calm voice.", max_new_tokens=4,
                                   seed=0)
        else:
            n = int(1.5 * MODEL_SAMPLE_RATE)
            t = np.arange(n, dtype=np.float32) / MODEL_SAMPLE_RATE
            rng = np.random.default_rng(0)
            tone = 0.3 * np.sin(2 * np.pi * 220.0 * t) + 0.05 * rng.standard_normal(n)
            prompt = self.build_voice_prompt(tone.astype(np.float32), MODEL_SAMPLE_RATE,
                                             x_vector_only=True)
            req = SynthesisRequest(text="Hello.", voice_prompt=prompt, max_new_tokens=4, seed=0)
        self.synthesize([req])
        self.calibrate_pacing(req)
        log.info("warmed up %s in %.2fs", kind.value, time.perf_counter() - t0)
        runner = self._loop.runner if self._loop is not None else None
        if runner is not None and runner.compile_mode == "cudagraphs":
            # capture every bucket now (greedy and sampled), not under the first requests
            seconds = sum(runner.warm(runner.batch_ladder, runner.context_ladder, sampled=s)
                          for s in (False, True))
            log.info("captured %d step graphs in %.1fs", len(runner.compile_seconds), seconds)
