"""Request validation: every request is checked against what the checkpoint itself declares
(kind, speakers, languages, the voice prompt's shapes) before the model runs, so a caller's
mistake is an `UnsupportedValueError` naming the field (4xx) and never reaches the model;
the result is a `PreparedRequest` in the model's own terms."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from deployments.engine.request import PreparedRequest, ResolvedSampling
from deployments.engine.types import (
    EngineConfig,
    ModelInfo,
    ModelKind,
    SamplingParams,
    SynthesisRequest,
    UnsupportedValueError,
    VoicePrompt,
)

_MAX_SEED = 2**63 - 1


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


class RequestValidator:
    """Validates requests for one loaded checkpoint (`info`) under one engine config."""

    def __init__(self, info: ModelInfo, config: EngineConfig, *, generate_defaults: dict | None,
                 default_max_new_tokens: int, codebook_size: int, num_code_groups: int,
                 speaker_embedding_dim: int) -> None:
        self.info = info
        self._config = config
        self._generate_defaults = generate_defaults or {}
        self.default_max_new_tokens = default_max_new_tokens
        self._codebook_size = codebook_size
        self._num_code_groups = num_code_groups
        self._spk_dim = speaker_embedding_dim

    def prepare(self, r: SynthesisRequest, *, arriving: bool = False) -> PreparedRequest:
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
        return PreparedRequest(
            text=r.text, language=language, speaker=speaker, instruct=instruct,
            voice_prompt=r.voice_prompt, seed=r.seed,
            max_new_tokens=min(mnt, limit) if mnt is not None else self.default_max_new_tokens,
            min_frames=mf or 0, sampling=self._resolve_sampling(r.sampling),
            non_streaming_mode=not _streaming_text(r, kind, arriving),
            background=bool(r.background), arrived_at=r.arrived_at,
        )

    def _resolve_sampling(self, sp: SamplingParams | None) -> ResolvedSampling:
        """Request settings, else generation_config.json, else qwen-tts's defaults;
        do_sample falls back to EngineConfig.do_sample, the predictor's to the talker's."""
        sp = sp or SamplingParams()
        if not isinstance(sp, SamplingParams):
            raise UnsupportedValueError("sampling", type(sp).__name__, [],
                                        "sampling must be a SamplingParams")
        ckpt = self._generate_defaults

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
