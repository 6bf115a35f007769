"""Settings of the multi-tenant platform: the `platform:` section of AppArgs.

Backends are named by URL (database, Redis, blob store); secrets are `SecretStr`, so they never
show in a repr, a log line or an error message. `model_dump(mode="json")` reveals them on
purpose: the settings layer round-trips AppArgs through JSON (serve_app.app.settings), and a
masked value would silently replace the real one. Never log a JSON dump of these settings.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, IPvAnyNetwork, PlainSerializer, SecretStr

#: A secret setting: masked in repr/str, revealed only in a JSON dump (see the module doc).
Secret = Annotated[
    SecretStr, PlainSerializer(lambda v: v.get_secret_value(), return_type=str, when_used="json")
]

QuotaPeriod = Literal["day", "month"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TenantLimits(_Strict):
    """What one tenant may use. None means unlimited."""

    requests_per_minute: int | None = Field(None, ge=1, description="Admitted requests per minute")
    max_concurrent: int | None = Field(None, ge=1, description="Requests in flight at once")
    characters_per_period: int | None = Field(
        None, ge=0, description="Characters synthesized (0: none; a plan that blocks past an "
        "included quota of 0)")
    audio_seconds_per_period: float | None = Field(None, ge=0, description="Audio produced")
    period: QuotaPeriod = Field("month", description="Quota period (UTC calendar day or month)")


class JobArgs(_Strict):
    """The durable async-job runner."""

    lease_s: float = Field(60.0, gt=0, description="A claimed job is re-taken after this silence")
    heartbeat_s: float = Field(15.0, gt=0, description="How often a runner renews its lease")
    poll_interval_s: float = Field(1.0, gt=0, description="Idle runner's wait between claims")
    concurrency: int = Field(2, ge=1, description="Jobs one runner works on at once")
    max_running_per_tenant: int | None = Field(
        2, ge=1, description="Jobs of one tenant running at once, over all runners (the fair "
        "queue: claims go round-robin across tenants, least recently served first); null: "
        "no cap")
    max_attempts: int = Field(3, ge=1, description="Claims of one job before it fails")
    max_text_chars: int = Field(200_000, ge=1, description="Longest text a job accepts")
    segment_chars: int = Field(300, ge=20, description="Longest text segment per synthesis "
                               "(a resumed job keeps the length it was started with)")
    crossfade_ms: float = Field(15.0, ge=0, le=200, description="Crossfade between segments")
    webhook_timeout_s: float = Field(10.0, gt=0, description="One webhook POST's timeout")
    webhook_max_attempts: int = Field(6, ge=1, description="POSTs of one webhook before it fails")
    webhook_backoff_s: float = Field(2.0, gt=0, description="First retry delay; doubles each try")
    webhook_backoff_max_s: float = Field(300.0, gt=0, description="Longest retry delay")
    webhook_allow_private_hosts: bool = Field(
        False, description="Allow webhooks to loopback/private addresses (tests, one-box setups)"
    )


class BillingArgs(_Strict):
    """Plans, prices and invoices (serve_app.platform.plans, pricing, invoices)."""

    currency: str = Field("USD", pattern=r"^[A-Z]{3}$", description="BILLING_CURRENCY: the "
                          "one ISO 4217 currency every price is in, as integer minor units "
                          "(cents for USD)")
    quota_webhook_timeout_s: float = Field(10.0, gt=0, description="One quota-warning POST's "
                                           "timeout")


class PronunciationArgs(_Strict):
    """Pronunciation dictionaries' limits (serve_app.platform.pronunciation)."""

    max_dictionaries: int = Field(100, ge=1, description="Dictionaries one tenant may keep")
    max_entries: int = Field(1000, ge=1, description="Entries of one dictionary")
    max_grapheme_chars: int = Field(100, ge=1, description="Longest grapheme (a word or phrase)")
    max_alias_chars: int = Field(200, ge=1, description="Longest alias")
    max_pls_bytes: int = Field(1_000_000, ge=1, description="Largest PLS file imported")


class PlatformArgs(_Strict):
    """Tenants, keys, limits, usage, saved voices and jobs (see docs/platform.md)."""

    auth_enabled: bool = Field(
        True, description="AUTH_ENABLED: require an API key; false only for an open demo"
    )
    data_dir: str | None = Field(
        None, description="QTTS_DATA_DIR: where the embedded defaults (SQLite, blobs, dev key) live"
    )
    database_url: Secret | None = Field(
        None, description="DATABASE_URL: sqlite:///path or postgresql://... (default: SQLite)"
    )
    admin_database_url: Secret | None = Field(
        None, description="ADMIN_DATABASE_URL: the connection of the admin path and of the "
        "work that crosses tenants (key lookup, job claims, closing a period); on PostgreSQL "
        "with row-level security, DATABASE_URL is the application role, subject to it, and "
        "this one the tables' owner (default: DATABASE_URL)")
    redis_url: Secret | None = Field(
        None, description="REDIS_URL: shared limits across replicas (default: one-node limits)"
    )
    redis_key_prefix: str = Field("qtts", min_length=1, description="Prefix of every Redis key")
    blob_store_url: str | None = Field(
        None, description="BLOB_STORE_URL: file:///dir or s3://bucket/prefix?endpoint_url=..."
    )
    voice_encryption_keys: Secret | None = Field(
        None, description="VOICE_ENCRYPTION_KEYS: 'id:base64key,...', newest first"
    )
    api_key_pepper: Secret | None = Field(
        None, description="API_KEY_PEPPER: HMAC key of stored API-key hashes"
    )
    admin_token: Secret | None = Field(None, description="ADMIN_TOKEN: guards the admin API")
    default_limits: TenantLimits = Field(
        default_factory=TenantLimits, description="Limits of a tenant created without its own"
    )
    auth_cache_s: float = Field(
        10.0, ge=0, description="How long a verified key is trusted without a DB lookup "
        "(a revocation takes effect within this time on every replica)"
    )
    concurrency_lease_s: float = Field(
        120.0, gt=0, description="A concurrency slot not renewed for this long is freed "
        "(a dead replica does not leak slots)"
    )
    voice_cache_size: int = Field(256, ge=0, description="Decrypted voice prompts per replica")
    handle_tenant: str = Field(
        "internal", min_length=1, description="The tenant that Python callers of the ingress "
        "handle act as (trusted in-cluster code; created on first use)"
    )
    trusted_networks: list[IPvAnyNetwork] = Field(
        default_factory=list, description="TRUSTED_NETWORKS: networks (CIDR) whose calls to the "
        "seed endpoints (/api/...) without an API key act as `trusted_network_tenant`, so an "
        "old client that sends no key keeps working with auth on; empty (the default): off")
    trusted_network_tenant: str = Field(
        "seed-worker", min_length=1, description="TRUSTED_NETWORK_TENANT: the tenant those calls "
        "act as (created on first use): limited and metered like any tenant")
    jobs: JobArgs = Field(default_factory=JobArgs)
    billing: BillingArgs = Field(default_factory=BillingArgs)
    pronunciation: PronunciationArgs = Field(default_factory=PronunciationArgs)

    # ------------------------------------------------------------------ resolved values
    def resolved_data_dir(self) -> Path:
        raw = self.data_dir or os.environ.get("QTTS_DATA_DIR")
        base = Path(raw) if raw else Path.home() / ".local" / "share" / "qwen3-tts-serve"
        return base.expanduser()

    def resolved_database_url(self) -> str:
        if self.database_url is not None:
            return self.database_url.get_secret_value()
        return f"sqlite:///{self.resolved_data_dir() / 'platform.db'}"

    def resolved_admin_database_url(self) -> str | None:
        return self.admin_database_url.get_secret_value() if self.admin_database_url else None

    def resolved_blob_store_url(self) -> str:
        return self.blob_store_url or (self.resolved_data_dir() / "blobs").as_uri()
