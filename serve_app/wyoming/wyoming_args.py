"""The `wyoming:` section of AppArgs: Home Assistant's Wyoming TTS server (serve_app.wyoming).

Wyoming has no authentication: the server answers only peers in `platform.trusted_networks`
and acts as one configured tenant, whose limits and usage apply.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from serve_app.protocol.fields import MaxNewTokens, MinFrames, OutputSampleRate


class WyomingArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(False, description="WYOMING_ENABLED: listen for Wyoming clients in "
                          "every ingress replica")
    host: str = Field("0.0.0.0", min_length=1, description="WYOMING_HOST: the address to "
                      "listen on (peers are still held to platform.trusted_networks)")
    port: int = Field(10200, ge=1, le=65535, description="WYOMING_PORT: the TCP port (Piper's, "
                      "the port Home Assistant suggests); the replicas of one node share it")
    tenant: str = Field("home-assistant", min_length=1, description="WYOMING_TENANT: the tenant "
                        "Wyoming clients act as (created on first use): its limits, plan and "
                        "usage apply, and `describe` lists its saved voices")
    sample_rate: OutputSampleRate = Field(22050, description="WYOMING_SAMPLE_RATE: the rate of "
                                          "the 16-bit mono PCM sent (the models make 24000 Hz; "
                                          "22050 is what Home Assistant's pipeline uses)")
    default_voice: str = Field("Vivian", min_length=1, description="WYOMING_DEFAULT_VOICE: the "
                               "voice of a synthesize that names none (a listed voice name)")
    zeroconf: bool = Field(False, description="WYOMING_ZEROCONF: announce the server over mDNS "
                           "as `_wyoming._tcp` so Home Assistant discovers it")
    max_connections: int = Field(32, ge=1, description="WYOMING_MAX_CONNECTIONS: open Wyoming "
                                 "connections per ingress replica; more get an error event "
                                 "(too_many_connections) and are closed")
    max_connections_per_peer: int = Field(
        4, ge=1, description="WYOMING_MAX_CONNECTIONS_PER_PEER: open connections from one "
        "peer address per ingress replica; more get an error event and are closed")
    min_frames: MinFrames | None = Field(None, description="Benchmarking aid (the session "
                                         "field of the same name) for every Wyoming request")
    max_new_tokens: MaxNewTokens | None = Field(None, description="Cap of codec frames per "
                                                "request (the session field of the same name)")

    def address(self, host: str | None = None) -> str:
        """The URI clients connect to (`host`: what they reach; default: the bound host)."""
        return f"tcp://{host or self.host}:{self.port}"
