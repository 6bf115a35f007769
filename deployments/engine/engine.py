"""TTSEngine: one loaded Qwen3-TTS checkpoint (any kind) behind a small, typed, thread-safe API.

No Ray here: the model-server deployment wraps this class, and tests and benchmarks use it
directly. Every request is validated against what the checkpoint itself declares before the
model runs, so a caller's mistake is an `UnsupportedValueError` (4xx) and never reaches
qwen-tts; anything the model raises after that is an `EngineError` (5xx).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import io
import logging
import math
import os
import shutil
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np
import torch

from deployments.engine.batched import (
    Job,
    LoopStreamRunner,
    ResolvedSampling,
    StepLoop,
    StepObserver,
    frame_budget,
)
from deployments.engine.streaming import (
    AsyncSynthesisStream,
    StreamRunner,
    StreamStats,
    SynthesisStream,
)
from deployments.engine.text_input import TextInput
from deployments.engine.types import (
    MODEL_SAMPLE_RATE,
    EngineConfig,
    EngineError,
    FinishReason,
    ModelInfo,
    ModelKind,
    SamplingParams,
    StreamChunking,
    SynthesisRequest,
    SynthesisResult,
    UnsupportedValueError,
    VoicePrompt,
)

log = logging.getLogger(__name__)

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
_MIN_REFERENCE_SECONDS = 0.5
_MAX_SEED = 2**63 - 1


class _DropMessages(logging.Filter):
    def __init__(self, *prefixes: str) -> None:
        super().__init__()
        self.prefixes = prefixes

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).lstrip().startswith(self.prefixes)


def import_qwen_tts() -> ModuleType:
    """Import qwen_tts without its import-time noise (a flash-attn banner on stdout for the
    25 Hz tokenizer, which the 12 Hz models never use, and a SoX warning), and without the
    "Setting `pad_token_id`" warning that transformers logs on every generate call."""
    if "qwen_tts" in sys.modules:
        return sys.modules["qwen_tts"]
    logging.getLogger("sox").addFilter(_DropMessages("SoX could not be found"))
    logging.getLogger("transformers.generation.utils").addFilter(
        _DropMessages("Setting `pad_token_id`")
    )
    # with do_sample=False the package still passes its sampling temperature
    logging.getLogger("transformers.generation.configuration_utils").addFilter(
        _DropMessages("The following generation flags are not valid")
    )
    if "sox" not in sys.modules and shutil.which("sox") is None:
        _import_sox_without_shell_noise()
    with contextlib.redirect_stdout(io.StringIO()):
        import qwen_tts
    return qwen_tts


def _import_sox_without_shell_noise() -> None:
    # `import sox` probes `sox -h` through a shell, which prints "sox: not found" on fd 2
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        with contextlib.suppress(ImportError):  # qwen_tts's own import reports it
            import sox  # noqa: F401
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def resolve_device(device: str) -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def resolve_dtype(dtype: str, device: str) -> torch.dtype:
    if dtype == "auto":
        return torch.bfloat16 if device.startswith("cuda") else torch.float32
    return _DTYPES[dtype]


def resolve_attn(attn: str, device: str) -> str:
    if attn == "auto":
        on_cuda = device.startswith("cuda")
        return "flash_attention_2" if on_cuda and importlib.util.find_spec("flash_attn") else "sdpa"
    return attn


@dataclass(frozen=True)
class _Prepared:
    """A validated request in the model's own terms (lower-case ids, effective limits)."""

    text: str
    language: str
    speaker: str | None
    instruct: str
    voice_prompt: VoicePrompt | None
    seed: int | None
    max_new_tokens: int
    min_frames: int = 0
    sampling: ResolvedSampling | None = None
    non_streaming_mode: bool = True  # how qwen-tts feeds the text (all at once vs interleaved)

    @property
    def group_key(self) -> tuple:
        """Requests the reference backend can run in one generate call share this."""
        return (self.max_new_tokens, self.min_frames, self.sampling, self.non_streaming_mode)


def _streaming_text(r: SynthesisRequest, kind: ModelKind, arriving: bool) -> bool:
    """Whether the talker reads the text one token per frame (see SynthesisRequest)."""
    if arriving:
        if r.streaming_text is False:
            raise UnsupportedValueError("streaming_text", False, [True],
                                        "text that is still arriving is read in streaming-text mode")
        return True
    if r.streaming_text is None:
        return kind is ModelKind.BASE  # qwen-tts's default per kind
    return bool(r.streaming_text)


_HARD_DEFAULTS = {"do_sample": True, "top_k": 50, "top_p": 1.0, "temperature": 0.9,
                  "repetition_penalty": 1.05, "subtalker_top_k": 50, "subtalker_top_p": 1.0,
                  "subtalker_temperature": 0.9}


class TTSEngine:
    """A loaded checkpoint. Use `TTSEngine.load(config)`; all methods are thread-safe.

    `config.backend` picks the generation path: "batched" (default) runs every request in
    the model's step loop (`deployments.engine.batched`); "reference" runs qwen-tts's stock
    generate behind one lock (torch's global RNG and the package's model state are shared),
    kept as what parity tests compare against. Both take the same requests and give the same
    codes for the same greedy request.
    """

    def __init__(self, tts: Any, config: EngineConfig, *, device: str, dtype: torch.dtype) -> None:
        self._tts = tts
        self._config = config
        self._device = device
        self._dtype = dtype
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
        self._samples_per_frame = int(st.get_decode_upsample_rate())
        self._codebook_size = int(talker.code_predictor_config.vocab_size)
        self._num_code_groups = int(talker.num_code_groups)
        self._spk_dim = (
            int(model_cfg.speaker_encoder_config.enc_dim) if kind is ModelKind.BASE else 0
        )
        ckpt_default = (tts.generate_defaults or {}).get("max_new_tokens")
        self.default_max_new_tokens = min(int(ckpt_default or config.max_new_tokens),
                                          config.max_new_tokens)
        self._loop: StepLoop | None = None
        if config.backend == "batched":
            self._loop = StepLoop(tts, config, sample_rate=self.info.sample_rate,
                                  samples_per_frame=self._samples_per_frame,
                                  stats=self.stream_stats)

    @property
    def backend(self) -> str:
        return self._config.backend

    @property
    def loop(self) -> StepLoop | None:
        """The step loop (batched backend; None for the reference backend)."""
        return self._loop

    def set_observer(self, observer: StepObserver) -> None:
        """Metrics hooks of the step loop (batched backend; a no-op otherwise)."""
        if self._loop is not None:
            self._loop.observer = observer

    def close(self) -> None:
        """Stop the step loop (pending requests fail with EngineError)."""
        if self._loop is not None:
            self._loop.close()

    # ------------------------------------------------------------------ loading
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

    @property
    def config(self) -> EngineConfig:
        return self._config

    @property
    def model(self) -> Any:
        """The underlying `qwen_tts.Qwen3TTSModel` (for streaming hooks and benchmarks)."""
        return self._tts

    # ------------------------------------------------------------------ validation
    def validate(self, request: SynthesisRequest) -> None:
        """Raise `UnsupportedValueError` (naming the field and the allowed values) if this
        checkpoint cannot synthesize `request`."""
        self._prepare(request)

    def _prepare(self, r: SynthesisRequest, *, arriving: bool = False) -> _Prepared:
        """`arriving`: the text comes later through a TextInput (`r.text` is ignored)."""
        info = self.info
        kind = info.kind
        if not arriving and (not isinstance(r.text, str) or not r.text.strip()):
            raise UnsupportedValueError("text", r.text, [], "text must not be empty")
        language = (r.language or "auto").lower()
        if language not in info.languages:
            raise UnsupportedValueError("language", r.language, info.languages)
        speaker = r.speaker.lower() if r.speaker else None
        instruct = r.instruct or ""
        if kind is ModelKind.CUSTOM_VOICE:
            if speaker is None:
                raise UnsupportedValueError("speaker", r.speaker, info.speakers,
                                            "speaker is required; allowed: "
                                            + ", ".join(info.speakers))
            if speaker not in info.speakers:
                raise UnsupportedValueError("speaker", r.speaker, info.speakers)
            # qwen-tts silently drops instruct when `tts_model_size in "0b6"` (0.6B CustomVoice)
            if instruct.strip() and info.model_size in "0b6":
                raise UnsupportedValueError(
                    "instruct", r.instruct, [],
                    f"this {info.model_size} CustomVoice checkpoint does not support instruct",
                )
        elif speaker is not None:
            raise UnsupportedValueError(
                "speaker", r.speaker, [],
                f"a {kind.value} checkpoint has no preset speakers"
                + (": describe the voice in instruct" if kind is ModelKind.VOICE_DESIGN else
                   ": give a voice_prompt"),
            )
        if kind is ModelKind.VOICE_DESIGN and not instruct.strip():
            raise UnsupportedValueError(
                "instruct", r.instruct, [], "voice design needs instruct (the voice description)"
            )
        if kind is ModelKind.BASE:
            if instruct.strip():
                raise UnsupportedValueError("instruct", r.instruct, [],
                                            "a base (voice clone) checkpoint does not take instruct")
            self._check_voice_prompt(r.voice_prompt)
        elif r.voice_prompt is not None:
            raise UnsupportedValueError("voice_prompt", "<VoicePrompt>", [],
                                        f"a {kind.value} checkpoint does not clone voices")
        if r.seed is not None and (
            isinstance(r.seed, bool) or not isinstance(r.seed, int) or not 0 <= r.seed <= _MAX_SEED
        ):
            raise UnsupportedValueError("seed", r.seed, [], f"seed must be an int in [0, {_MAX_SEED}]")
        limit = self._config.max_new_tokens
        mnt = r.max_new_tokens
        if mnt is not None and (isinstance(mnt, bool) or not isinstance(mnt, int) or mnt < 2):
            raise UnsupportedValueError("max_new_tokens", mnt, [], "max_new_tokens must be an int >= 2")
        mf = r.min_frames
        if mf is not None and (isinstance(mf, bool) or not isinstance(mf, int) or mf < 0):
            raise UnsupportedValueError("min_frames", mf, [], "min_frames must be an int >= 0")
        return _Prepared(
            text=r.text, language=language, speaker=speaker, instruct=instruct,
            voice_prompt=r.voice_prompt, seed=r.seed,
            max_new_tokens=min(mnt, limit) if mnt is not None else self.default_max_new_tokens,
            min_frames=mf or 0, sampling=self._resolve_sampling(r.sampling),
            non_streaming_mode=not _streaming_text(r, kind, arriving),
        )

    def _resolve_sampling(self, sp: SamplingParams | None) -> ResolvedSampling:
        """Request settings, else generation_config.json, else qwen-tts's defaults;
        do_sample falls back to EngineConfig.do_sample, the predictor's to the talker's."""
        sp = sp or SamplingParams()
        if not isinstance(sp, SamplingParams):
            raise UnsupportedValueError("sampling", type(sp).__name__, [],
                                        "sampling must be a SamplingParams")
        ckpt = self._tts.generate_defaults or {}

        def pick(value: Any, key: str) -> Any:
            if value is not None:
                return value
            return ckpt.get(key, _HARD_DEFAULTS[key])

        do_sample = bool(sp.do_sample if sp.do_sample is not None else self._config.do_sample)
        sub_do = bool(sp.subtalker_do_sample if sp.subtalker_do_sample is not None else do_sample)
        out = ResolvedSampling(
            do_sample=do_sample,
            temperature=float(pick(sp.temperature, "temperature")),
            top_k=int(pick(sp.top_k, "top_k")),
            top_p=float(pick(sp.top_p, "top_p")),
            repetition_penalty=float(pick(sp.repetition_penalty, "repetition_penalty")),
            subtalker_do_sample=sub_do,
            subtalker_temperature=float(pick(sp.subtalker_temperature, "subtalker_temperature")),
            subtalker_top_k=int(pick(sp.subtalker_top_k, "subtalker_top_k")),
            subtalker_top_p=float(pick(sp.subtalker_top_p, "subtalker_top_p")),
            subtalker_repetition_penalty=float(sp.subtalker_repetition_penalty
                                               if sp.subtalker_repetition_penalty is not None
                                               else 1.0),
        )
        for name in ("temperature", "repetition_penalty", "subtalker_temperature",
                     "subtalker_repetition_penalty"):
            value = getattr(out, name)
            if not (math.isfinite(value) and value > 0):
                raise UnsupportedValueError(name, value, [], f"{name} must be > 0")
        for name in ("top_p", "subtalker_top_p"):
            value = getattr(out, name)
            if not 0 < value <= 1:
                raise UnsupportedValueError(name, value, [], f"{name} must be in (0, 1]")
        for name in ("top_k", "subtalker_top_k"):
            if getattr(out, name) < 0:
                raise UnsupportedValueError(name, getattr(out, name), [], f"{name} must be >= 0")
        if out.subtalker_repetition_penalty != 1.0 and self._config.backend == "reference":
            raise UnsupportedValueError(
                "subtalker_repetition_penalty", out.subtalker_repetition_penalty, [],
                "the reference backend (stock qwen-tts) has no code-predictor repetition penalty")
        return out

    def _check_voice_prompt(self, vp: VoicePrompt | None) -> None:
        if vp is None:
            raise UnsupportedValueError("voice_prompt", None, [],
                                        "voice cloning needs a voice_prompt (see build_voice_prompt)")
        if not isinstance(vp, VoicePrompt):
            raise UnsupportedValueError("voice_prompt", type(vp).__name__, [],
                                        "voice_prompt must be a VoicePrompt")
        emb = np.asarray(vp.ref_spk_embedding)
        if emb.shape != (self._spk_dim,) or not np.isfinite(emb).all():
            raise UnsupportedValueError(
                "voice_prompt", f"speaker embedding {emb.shape}", [],
                f"voice_prompt does not fit this checkpoint (speaker embedding must be finite "
                f"({self._spk_dim},)): build it with this model",
            )
        if vp.x_vector_only_mode:
            return
        code = vp.ref_code
        if code is None or not (vp.ref_text or "").strip():
            raise UnsupportedValueError("voice_prompt", "<VoicePrompt>", [],
                                        "an ICL voice_prompt needs ref_code and ref_text")
        code = np.asarray(code)
        if (code.ndim != 2 or code.shape[1] != self._num_code_groups or code.shape[0] == 0
                or not np.issubdtype(code.dtype, np.integer)
                or code.min() < 0 or code.max() >= self._codebook_size):
            raise UnsupportedValueError(
                "voice_prompt", f"ref_code {code.shape}", [],
                f"voice_prompt ref_code must be (T, {self._num_code_groups}) codes in "
                f"[0, {self._codebook_size}): build it with this model",
            )

    # ------------------------------------------------------------------ synthesis
    def synthesize(self, requests: Sequence[SynthesisRequest]) -> list[SynthesisResult]:
        """Synthesize `requests` (results in request order). All are validated first.

        Batched backend: every request joins the step loop (raises EngineOverloadedError,
        queueing none of them, when slots and wait queue are full). Reference backend: seeded
        requests run alone, each after `torch.manual_seed(seed)` inside a forked RNG; unseeded
        ones run as one generate call per (frame cap, min_frames, sampling) group.
        """
        prepared = [self._prepare(r) for r in requests]
        if self._loop is not None:
            return self._synthesize_batched(prepared)
        results: list[SynthesisResult | None] = [None] * len(prepared)
        groups: dict[tuple, list[int]] = {}
        with self._lock, torch.inference_mode():
            caps = [self._reference_cap(p) for p in prepared]
            for i, p in enumerate(prepared):
                if p.seed is None:
                    groups.setdefault((caps[i], *p.group_key), []).append(i)
            for key, idxs in groups.items():
                batch = [prepared[i] for i in idxs]
                for i, res in zip(idxs, self._generate(batch, key[0]), strict=True):
                    results[i] = res
            for i, p in enumerate(prepared):
                if p.seed is None:
                    continue
                with self._seeded(p.seed):
                    results[i] = self._generate([p], caps[i])[0]
        done = [r for r in results if r is not None]
        if len(done) != len(results):  # cannot happen: every request is in one group
            raise EngineError("internal error: a request produced no result")
        return done

    def _synthesize_batched(self, prepared: list[_Prepared]) -> list[SynthesisResult]:
        assert self._loop is not None
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
        prepared = self._prepare(request)
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

    def _reference_cap(self, p: _Prepared) -> int:
        """max_new_tokens of a reference generate call: the request's cap, lowered to the
        runaway budget + 1 (qwen-tts makes at most max_new_tokens - 1 frames)."""
        prompt = f"<|im_start|>assistant\n{p.text}<|im_end|>\n<|im_start|>assistant\n"
        ids = self._tts.processor(text=prompt, return_tensors="pt", padding=True)["input_ids"]
        text_tokens = int(ids.shape[-1]) - 8
        return min(p.max_new_tokens, frame_budget(self._config, text_tokens, p.min_frames) + 1)

    def _cuda_devices(self) -> list[int]:
        if not self._device.startswith("cuda"):
            return []
        return [torch.device(self._device).index or 0]

    def _generate(self, batch: list[_Prepared], max_new_tokens: int) -> list[SynthesisResult]:
        kind = self.info.kind
        t0 = time.perf_counter()
        try:
            wavs, sr = self._run_model(batch, max_new_tokens)
        except Exception as e:
            raise EngineError(f"{kind.value} generation failed: {type(e).__name__}: {e}") from e
        seconds = time.perf_counter() - t0
        if len(wavs) != len(batch) or int(sr) != self.info.sample_rate:
            raise EngineError(f"model returned {len(wavs)} clips at {sr} Hz for {len(batch)} "
                              f"requests at {self.info.sample_rate} Hz")
        out = []
        for p, wav in zip(batch, wavs, strict=True):
            audio = np.ascontiguousarray(np.asarray(wav, dtype=np.float32).reshape(-1))
            if p.voice_prompt is not None and p.voice_prompt.icl_mode:
                # qwen-tts cuts the reference off at int(ref/total * n), which float rounding
                # can put one sample early: drop the stray reference samples so that the
                # output is whole frames (and equals the streamed output).
                audio = audio[audio.size % self._samples_per_frame:]
            if audio.size == 0 or not np.isfinite(audio).all():
                raise EngineError("model produced empty or non-finite audio")
            frames = audio.size // self._samples_per_frame
            reason = FinishReason.EOS
            if frames >= max_new_tokens - 1:
                reason = (FinishReason.BUDGET if max_new_tokens < p.max_new_tokens
                          else FinishReason.LENGTH)
            out.append(SynthesisResult(
                audio=audio, sample_rate=int(sr), frames=frames, generation_seconds=seconds,
                extra={"backend": "reference", "batch_size": len(batch), "seed": p.seed,
                       "max_new_tokens": max_new_tokens},
                finish_reason=reason,
            ))
        return out

    def _run_model(self, batch: list[_Prepared], max_new_tokens: int) -> tuple[list, int]:
        """One qwen-tts generate call for `batch` (the caller holds the lock; the batch shares
        its sampling and min_frames)."""
        min_frames = max(p.min_frames for p in batch)
        if min_frames <= 2:
            return self._run_stock(batch, max_new_tokens)
        # stock generate has no min length beyond 2: hide EOS in the talker's logits until
        # `min_frames` tokens exist (the talker's forward k decides token k)
        eos = int(self._tts.model.config.talker_config.codec_eos_token_id)
        forwards = 0

        def suppress_eos(_module: Any, _args: Any, output: Any) -> None:
            nonlocal forwards
            if forwards < min_frames:
                output.logits[:, -1, eos] = float("-inf")
            forwards += 1

        hook = self._tts.model.talker.register_forward_hook(suppress_eos)
        try:
            return self._run_stock(batch, max_new_tokens)
        finally:
            hook.remove()

    def _run_stock(self, batch: list[_Prepared], max_new_tokens: int) -> tuple[list, int]:
        kind = self.info.kind
        sampling = batch[0].sampling
        assert sampling is not None
        gen = {"max_new_tokens": max_new_tokens, **sampling.generate_kwargs(),
               "non_streaming_mode": batch[0].non_streaming_mode}
        texts = [p.text for p in batch]
        languages = [p.language for p in batch]
        if kind is ModelKind.CUSTOM_VOICE:
            return self._tts.generate_custom_voice(
                text=texts, speaker=[p.speaker for p in batch], language=languages,
                instruct=[p.instruct for p in batch], **gen)
        if kind is ModelKind.VOICE_DESIGN:
            return self._tts.generate_voice_design(
                text=texts, instruct=[p.instruct for p in batch], language=languages, **gen)
        items = [self._to_prompt_item(p.voice_prompt) for p in batch]
        return self._tts.generate_voice_clone(
            text=texts, language=languages, voice_clone_prompt=items, **gen)

    # ------------------------------------------------------------------ reference generation
    @property
    def samples_per_frame(self) -> int:
        """Audio samples per codec frame (the codec's upsampling rate)."""
        return self._samples_per_frame

    @contextlib.contextmanager
    def exclusive(self):
        """Hold the model alone (the engine lock, inference mode) for the body: the reference
        backend's generations share the model's modules and torch's global RNG."""
        with self._lock, torch.inference_mode():
            yield

    def generate_reference(self, p: _Prepared) -> None:
        """One stock qwen-tts generate call for `p`: seeded from its seed, capped at its frame
        cap and runaway budget, EOS hidden below its min_frames. The caller holds
        `exclusive()` and reads the frames through hooks (the returned audio is dropped)."""
        with self._seeded(p.seed):
            self._run_model([p], self._reference_cap(p))

    @contextlib.contextmanager
    def _seeded(self, seed: int | None):
        """Run the body with torch's RNG seeded from `seed` (forked: the global stream is
        left as it was); no-op for None."""
        if seed is None:
            yield
            return
        with torch.random.fork_rng(devices=self._cuda_devices()):
            torch.manual_seed(seed)
            if self._device.startswith("cuda"):
                torch.cuda.manual_seed_all(seed)
            yield

    # ------------------------------------------------------------------ streaming
    def stream(
        self, request: SynthesisRequest, chunking: StreamChunking | None = None
    ) -> SynthesisStream:
        """Start a streaming synthesis of `request` (validated here: a bad request raises
        before anything runs). Iterate the result for `AudioChunk`s (blocking) or use
        `astream` from async code; see `deployments.engine.streaming`."""
        return SynthesisStream(self._stream_runner(request, chunking))

    def astream(
        self, request: SynthesisRequest, chunking: StreamChunking | None = None
    ) -> AsyncSynthesisStream:
        """`stream` for asyncio consumers: chunks arrive without blocking the event loop."""
        return AsyncSynthesisStream(self._stream_runner(request, chunking))

    def astream_text(
        self, request: SynthesisRequest, text: TextInput, chunking: StreamChunking | None = None
    ) -> AsyncSynthesisStream:
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
        prepared = self._prepare(request, arriving=True)
        return AsyncSynthesisStream(LoopStreamRunner(
            self._loop, prepared, chunking or StreamChunking(), self.info.sample_rate, text))

    def _stream_runner(self, request: SynthesisRequest,
                       chunking: StreamChunking | None) -> StreamRunner | LoopStreamRunner:
        prepared = self._prepare(request)
        if self._loop is not None:
            return LoopStreamRunner(self._loop, prepared, chunking or StreamChunking(),
                                    self.info.sample_rate)
        return StreamRunner(self, prepared, chunking or StreamChunking(), self.stream_stats)

    def _to_prompt_item(self, vp: VoicePrompt | None) -> Any:
        """Our VoicePrompt -> qwen-tts VoiceClonePromptItem, tensors where the package wants
        them: speaker embedding on the model's device/dtype, ref_code int64 (T, 16)."""
        assert vp is not None  # validated
        qwen_tts = import_qwen_tts()
        emb = torch.as_tensor(np.asarray(vp.ref_spk_embedding, dtype=np.float32))
        code = None
        if vp.ref_code is not None and not vp.x_vector_only_mode:
            code = torch.as_tensor(np.asarray(vp.ref_code, dtype=np.int64)).to(self._device)
        return qwen_tts.VoiceClonePromptItem(
            ref_code=code,
            ref_spk_embedding=emb.to(device=self._device, dtype=self._dtype),
            x_vector_only_mode=bool(vp.x_vector_only_mode),
            icl_mode=not vp.x_vector_only_mode,
            ref_text=None if vp.x_vector_only_mode else vp.ref_text,
        )

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
        log.info("warmed up %s in %.2fs", kind.value, time.perf_counter() - t0)
