"""Typed arguments of the application builder (the `args:` block of a serve config).

Every knob of the graph that is not a Ray deployment option lives here, once (the model and
audio deployments' own sections, `ModelServerArgs` and `AudioArgs`, live with those
deployments in `deployments/args.py`, since nothing in `deployments/` imports `serve_app`). Ray deployment
options (replicas, autoscaling, resources, queue limits) live in the serve config's
`deployments:` list, where Ray reads them. Unknown keys are errors (`extra="forbid"`), since
Ray itself silently drops typos. Environment variables with the seed service's names fill in
whatever the config leaves unset (see `serve_app.app.settings`).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from deployments.args import AlignerArgs, AudioArgs, CloneArgs, ModelServerArgs
from deployments.checkpoints import TINY_SCHEME
from serve_app.platform.config import PlatformArgs
from serve_app.wyoming.wyoming_args import WyomingArgs

#: The deployment names: one source of truth for the builder, configs, tests and docs.
CUSTOM_VOICE = "CustomVoice"
VOICE_DESIGN = "VoiceDesign"
VOICE_CLONE = "VoiceClone"
AUDIO_PROCESSOR = "AudioProcessor"
ALIGNER = "ForcedAligner"  # word timestamps (deployments/aligner_server.py)
INGRESS = "TTSIngress"
MODEL_DEPLOYMENTS = (CUSTOM_VOICE, VOICE_DESIGN, VOICE_CLONE)

#: AppArgs section -> the published checkpoint it serves in production (hub ids).
PUBLISHED_CHECKPOINTS = {
    "custom_voice": "Qwen/Qwen3-TTS-12Hz-1.7B-CustomVoice",
    "voice_design": "Qwen/Qwen3-TTS-12Hz-1.7B-VoiceDesign",
    "voice_clone": "Qwen/Qwen3-TTS-12Hz-1.7B-Base",
}
ALL_DEPLOYMENTS = (*MODEL_DEPLOYMENTS, AUDIO_PROCESSOR, ALIGNER, INGRESS)

__all__ = ["AlignerArgs", "AppArgs", "AudioArgs", "CloneArgs", "IngressArgs", "ModelServerArgs", "WyomingArgs"]


#: Serve slots of an ingress replica kept free of synthesis and sockets (IngressArgs).
PROBE_HEADROOM = 64


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class IngressArgs(_Strict):
    """HTTP and handle API behaviour of the ingress."""

    max_text_chars: int = Field(5000, ge=1, description="Text to speak per request (and a "
                                "clone's ref_text)")
    max_instruction_chars: int = Field(
        1000, ge=1, description="`instruct` / `instructions` and a voice "
        "design's `description` (the model reads them in full at every request)")
    max_concurrent: int = Field(
        64, ge=1, description="MAX_CONCURRENT: synthesis requests in flight per ingress replica; "
        "beyond it requests get 503 with Retry-After"
    )
    retry_after_s: int = Field(2, ge=1, description="Retry-After sent with 503/429")
    request_timeout_s: float = Field(300.0, gt=0, description="Upper bound of one synthesis")
    cache_enabled: bool = Field(True, description="ENABLE_CACHE")
    cache_size: int = Field(256, ge=0, description="CACHE_SIZE: results kept per ingress replica")
    cors_origins: list[str] = Field(default_factory=list, description="CORS_ORIGINS (comma list)")
    session_idle_timeout_s: float = Field(
        60.0, gt=0, description="A speech session (WebSocket) whose client sends nothing for "
        "this long while its text is open ends with error session_idle (close 4408): an "
        "incremental session holds an engine slot while it waits")
    session_start_timeout_s: float = Field(
        5.0, gt=0, description="A WebSocket must send its first message (the session settings, "
        "with `api_key` when no key header was sent) within this long of connecting, or it is "
        "closed with 1008 (error session_start_timeout)")
    max_pending_sockets: int = Field(
        32, ge=1, description="WebSockets not yet authenticated per ingress replica; more are "
        "refused at the handshake (503 overloaded)")
    max_pending_sockets_per_client: int = Field(
        8, ge=1, description="WebSockets not yet authenticated from one client address; more "
        "are refused at the handshake (429 too_many_connections)")
    max_sessions: int = Field(
        64, ge=1, description="Speech sessions open per ingress replica; more are refused "
        "(503 overloaded)")
    max_sessions_per_tenant: int = Field(
        16, ge=1, description="Speech sessions of one tenant per ingress replica when the "
        "tenant has no max_concurrent limit (with one, that limit applies); more are refused "
        "(429 too_many_sessions)")

    @property
    def socket_budget(self) -> int:
        """The most Serve slots of an ingress replica that synthesis and sockets can hold
        while the gates (MAX_CONCURRENT, serve_app.edge.socket_gate) refuse the rest."""
        return self.max_concurrent + self.max_sessions + self.max_pending_sockets

    @property
    def min_serve_slots(self) -> int:
        """The least `max_ongoing_requests` an ingress replica needs: the socket budget plus
        PROBE_HEADROOM for probes, listings and refusals in flight. Below it, Serve's proxy
        queues a health check behind synthesis (tests/config checks every profile)."""
        return self.socket_budget + PROBE_HEADROOM


class AppArgs(_Strict):
    """Everything `build_app` needs. A model deployment set to null is left out of the graph."""

    custom_voice: ModelServerArgs | None = None
    voice_design: ModelServerArgs | None = None
    voice_clone: ModelServerArgs | None = None
    audio: AudioArgs = Field(default_factory=AudioArgs)
    clone: CloneArgs = Field(default_factory=CloneArgs)  # speech screening, consent
    ingress: IngressArgs = Field(default_factory=IngressArgs)
    platform: PlatformArgs = Field(default_factory=PlatformArgs)  # tenants, keys, limits, jobs
    wyoming: WyomingArgs = Field(default_factory=WyomingArgs)  # Home Assistant's protocol
    #: Word timestamps by the forced aligner; null: estimated (docs/api.md "Word timestamps")
    aligner: AlignerArgs | None = None

    def model_servers(self) -> dict[str, ModelServerArgs]:
        """Deployment name -> args, for the model kinds this graph serves."""
        pairs = {
            CUSTOM_VOICE: self.custom_voice,
            VOICE_DESIGN: self.voice_design,
            VOICE_CLONE: self.voice_clone,
        }
        return {name: a for name, a in pairs.items() if a is not None}

    def serves_tiny_models(self) -> bool:
        """Whether any model is one of the project's random-weight checkpoints (`tiny:...`,
        the demo and CI): their audio is noise of a realistic shape, not speech."""
        return any(m.engine.model.startswith(TINY_SCHEME) for m in self.model_servers().values())
