"""Typed arguments of the model and audio deployments (their sections of a serve config's
`args:`). They live with the deployments, below `serve_app`, which composes them into its
`AppArgs`; unknown keys are errors, since Ray itself silently drops typos."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from deployments.audio.formats import AudioFormat
from deployments.engine.types import EngineConfig, StreamChunking


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ModelServerArgs(_Strict):
    """One model deployment: its checkpoint and how it batches."""

    engine: EngineConfig
    max_batch_size: int = Field(8, ge=1, le=256, description="Concurrent requests per generate call")
    batch_wait_timeout_s: float = Field(
        0.01, ge=0.0, le=1.0, description="How long a batch waits to fill after its first request"
    )
    voice_prompt_cache_size: int = Field(
        64, ge=0, description="Clone prompts kept per replica, keyed on the reference audio"
    )
    streaming: StreamChunking = Field(
        default_factory=StreamChunking,
        description="Chunk sizes of streamed audio: first_chunk_frames, chunk_frames, "
        "left_context_frames (codec frames, 80 ms each)",
    )


class AudioArgs(_Strict):
    """Reference-audio limits and output defaults."""

    max_upload_bytes: int = Field(10 * 1024 * 1024, ge=1024)
    min_reference_seconds: float = Field(1.0, gt=0)
    max_reference_seconds: float = Field(60.0, gt=0)
    reference_loudness_lufs: float = Field(-23.0, ge=-70, le=-5)
    default_sample_rate: int = Field(24_000, ge=8000, le=48000, description="SAMPLE_RATE")
    default_format: AudioFormat = Field(AudioFormat.WAV, description="OUTPUT_FORMAT (native endpoints)")
    mark_outputs: bool = Field(
        True, description="Mark every output as AI-generated (deployments.audio.marking): "
        "in each format's own metadata, and X-AI-* headers on every audio response and stream")


#: Who must consent before a voice is cloned: `checked` (a consent recording of the speaker
#: reading a statement the API issued, compared with the reference by a speaker encoder),
#: `recorded` (consent=true, its time recorded) or `none`.
ConsentLevel = Literal["checked", "recorded", "none"]
CONSENT_LEVELS: tuple[str, ...] = ("checked", "recorded", "none")


class CloneArgs(_Strict):
    """Safe voice cloning (docs/platform.md, "Voice cloning safety"): references screened for
    speech, and the consent a clone needs unless a tenant's or plan's policy says otherwise."""

    min_speech_s: float = Field(
        1.0, ge=0, description="Speech (silero-vad) a reference or consent recording must "
        "hold; it is trimmed to its speech before the prompt is built. 0: not screened")
    consent: ConsentLevel = Field(
        "checked", description="Consent for a saved clone voice (POST /v1/voices) when the "
        "tenant and its plan set none")
    consent_one_shot: ConsentLevel = Field(
        "none", description="Consent for a one-shot clone (POST /v1/audio/clone) when the "
        "tenant and its plan set none")
    consent_threshold: float = Field(
        0.82, ge=-1.0, le=1.0, description="Least speaker similarity (resemblyzer, cosine) of "
        "the consent recording and the reference; chosen from the table in docs/platform.md "
        "(benchmarks/speaker_similarity.py: same speaker >= 0.838, different <= 0.804)")
    statement_ttl_s: float = Field(
        600.0, gt=0, description="How long an issued consent statement's code can be used")


#: The project's random-weight aligner checkpoint (deployments/aligner/tiny.py), as `model`.
TINY_ALIGNER = "tiny:aligner"


class AlignerArgs(_Strict):
    """The forced-aligner deployment (word timestamps, deployments/aligner_server.py)."""

    model: str = Field("Qwen/Qwen3-ForcedAligner-0.6B", description="A hub id, a local "
                       f"directory, or {TINY_ALIGNER} (the random-weight test checkpoint)")
    device: str = Field("auto", description="auto (cuda when there is one), cpu, cuda, cuda:N")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto", description="auto: bfloat16 on CUDA, float32 on a CPU")
    num_threads: int | None = Field(None, ge=1, description="torch threads on a CPU")
    max_audio_s: float = Field(300.0, gt=0, description="Longest audio aligned in one call "
                               "(the checkpoint's limit: 5 minutes); longer audio is estimated")
