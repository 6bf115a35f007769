"""The reference backend: qwen-tts's stock `generate`, one call at a time behind one lock
(torch's global RNG and the package's model state are shared), kept as what the batched
backend's parity tests compare against. Both backends take the same prepared requests and
give the same codes for the same greedy request.

Streaming (`ReferenceStreamRunner`): qwen-tts has no streaming output. Its talker runs HF
`generate`, and every decode step's forward returns `hidden_states=(layer_hiddens,
codec_ids[B, 16])`: the 16-code frame decided at that step. A forward hook on `model.talker`
therefore sees each frame as it is made. The 12 Hz speech decoder is causal, so a run of new
frames decoded behind a left context of earlier frames gives exactly the samples a
whole-utterance decode gives for those frames. One runner = one generation on its own thread,
holding the model alone for the whole generation; the hook is registered on a shared module,
so it only acts on its own thread's forwards. Cancelling sets a flag the hook checks at every
forward: the next frame raises `StreamCancelled` inside generate, which unwinds the package's
generation loop and frees the lock within one frame. When the talker finishes, qwen-tts would
decode the whole utterance once more; a forward pre-hook on the decoder (again filtered by
thread) stops it there, since every sample has already been streamed.
"""

from __future__ import annotations

import contextlib
import threading
import time
from typing import Any

import numpy as np
import torch

from deployments.engine.loading import import_qwen_tts
from deployments.engine.request import PreparedRequest, Sink, StreamStats, frame_budget
from deployments.engine.types import (
    AudioChunk,
    EngineConfig,
    EngineError,
    FinishReason,
    ModelKind,
    StreamCancelled,
    StreamChunking,
    SynthesisResult,
    VoicePrompt,
)


class ReferenceBackend:
    """Stock qwen-tts generation for one loaded checkpoint (all methods thread-safe)."""

    def __init__(self, tts: Any, config: EngineConfig, *, kind: ModelKind, sample_rate: int,
                 samples_per_frame: int, device: str, dtype: torch.dtype,
                 lock: threading.Lock) -> None:
        self._tts = tts
        self._config = config
        self.kind = self._kind = kind
        self.sample_rate = sample_rate
        self.samples_per_frame = self._samples_per_frame = samples_per_frame
        self._device = device
        self._dtype = dtype
        self._lock = lock

    @property
    def model(self) -> Any:
        return self._tts

    def synthesize(self, prepared: list[PreparedRequest]) -> list[SynthesisResult]:
        """Seeded requests run alone, each after `torch.manual_seed(seed)` inside a forked RNG;
        unseeded ones run as one generate call per (frame cap, min_frames, sampling) group."""
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

    def _reference_cap(self, p: PreparedRequest) -> int:
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

    def _generate(self, batch: list[PreparedRequest], max_new_tokens: int) -> list[SynthesisResult]:
        kind = self._kind
        t0 = time.perf_counter()
        try:
            wavs, sr = self._run_model(batch, max_new_tokens)
        except Exception as e:
            raise EngineError(f"{kind.value} generation failed: {type(e).__name__}: {e}") from e
        seconds = time.perf_counter() - t0
        if len(wavs) != len(batch) or int(sr) != self.sample_rate:
            raise EngineError(f"model returned {len(wavs)} clips at {sr} Hz for {len(batch)} "
                              f"requests at {self.sample_rate} Hz")
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

    def _run_model(self, batch: list[PreparedRequest], max_new_tokens: int) -> tuple[list, int]:
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

    def _run_stock(self, batch: list[PreparedRequest], max_new_tokens: int) -> tuple[list, int]:
        kind = self._kind
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

    # ------------------------------------------------------------------ streaming
    @contextlib.contextmanager
    def exclusive(self):
        """Hold the model alone (the engine lock, inference mode) for the body: the reference
        backend's generations share the model's modules and torch's global RNG."""
        with self._lock, torch.inference_mode():
            yield

    def generate_reference(self, p: PreparedRequest) -> None:
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


class _TalkerFinished(Exception):
    """Raised by the decoder pre-hook: generation is over, skip qwen-tts's own full decode."""


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


class ReferenceStreamRunner:
    """One streaming generation of the reference backend on its own thread (see the module
    docstring); the `StreamRunner` protocol of `streaming`."""

    def __init__(
        self, engine: ReferenceBackend, prepared: PreparedRequest, chunking: StreamChunking,
        stats: StreamStats,
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
        return self._engine.sample_rate

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
            kind = engine.kind.value
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
