"""Typed arguments of the model and audio deployments (their sections of a serve config's
`args:`). They live with the deployments, below `serve_app`, which composes them into its
`AppArgs`; unknown keys are errors, since Ray itself silently drops typos."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

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


#: Signature algorithms the C2PA library signs with (the private key's type must match).
SigningAlg = Literal["es256", "es384", "es512", "ps256", "ps384", "ps512", "ed25519"]


class ContentCredentialsArgs(_Strict):
    """C2PA Content Credentials (docs/platform.md, "Output marking"): every non-streamed wav,
    mp3 and flac output carries a manifest signed with the operator's certificate, on the
    AudioProcessor. On wherever a certificate is configured (and `mark_outputs` is on)."""

    enabled: bool = Field(True, description="Sign outputs when a certificate is configured")
    cert_chain: str | None = Field(
        None, description="Path of the PEM certificate chain: the signing certificate first, "
        "then the CAs that issued it (readable where the AudioProcessor runs)")
    private_key: str | None = Field(
        None, description="Path of the signing certificate's PEM private key (a secret: "
        "mount it, never put it in the config)")
    signing_alg: SigningAlg = Field("es256", description="The key's signature algorithm")
    trust_anchors: str | None = Field(
        None, description="Path of PEM CA certificates that POST /v1/audio/verify trusts "
        "(default: the last certificate of cert_chain, the operator's own CA)")
    development_signer: bool = Field(
        False, description="With no cert_chain: make (once) and use a DEVELOPMENT test CA "
        "and signer under the platform's data directory (c2pa-development/); the CPU demo's "
        "profile turns this on, production never should")

    @model_validator(mode="after")
    def _both_or_neither(self) -> ContentCredentialsArgs:
        if (self.cert_chain is None) != (self.private_key is None):
            raise ValueError("content_credentials: set both cert_chain and private_key, or "
                             "neither")
        return self

    def signs(self) -> bool:
        """Whether outputs are signed: on, and a certificate configured."""
        return self.enabled and self.cert_chain is not None


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
    content_credentials: ContentCredentialsArgs = Field(default_factory=ContentCredentialsArgs)

    def signs_outputs(self) -> bool:
        """Whether non-streamed wav/mp3/flac outputs get a signed C2PA manifest."""
        return self.mark_outputs and self.content_credentials.signs()


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
