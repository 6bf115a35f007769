"""Environment settings, with the seed service's variable names, layered under AppArgs.

A value written in the serve config wins; an environment variable fills in what the config
leaves unset; the AppArgs defaults fill in the rest. The table below is the only place that
knows the variable names (docs/configuration.md is checked against it by a test).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any

from serve_app.app.args import AppArgs

_MODEL_SECTIONS = ("custom_voice", "voice_design", "voice_clone")


def _bool(raw: str) -> bool:
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"expected true/false, got {raw!r}")


def _flash(raw: str) -> str:
    return "flash_attention_2" if _bool(raw) else "sdpa"


def _csv(raw: str) -> list[str]:
    return [part.strip() for part in raw.split(",") if part.strip()]


# variable -> (paths in AppArgs it sets, converter). "*" stands for every model section.
ENVIRONMENT: dict[str, tuple[tuple[str, ...], Callable[[str], Any]]] = {
    "CUSTOM_VOICE_MODEL_ID": (("custom_voice.engine.model",), str),
    "MODEL_ID": (("custom_voice.engine.model",), str),  # the seed's single-model name
    "VOICE_DESIGN_MODEL_ID": (("voice_design.engine.model",), str),
    "VOICE_CLONE_MODEL_ID": (("voice_clone.engine.model",), str),
    "DEVICE": (("*.engine.device",), str),
    "TORCH_DTYPE": (("*.engine.dtype",), str),
    "ENABLE_FLASH_ATTENTION": (("*.engine.attn_implementation",), _flash),
    "MAX_NEW_TOKENS": (("*.engine.max_new_tokens",), int),
    "MAX_CONCURRENT": (("ingress.max_concurrent",), int),
    "ENABLE_CACHE": (("ingress.cache_enabled",), _bool),
    "CACHE_SIZE": (("ingress.cache_size",), int),
    "CORS_ORIGINS": (("ingress.cors_origins",), _csv),
    "SAMPLE_RATE": (("audio.default_sample_rate",), int),
    "OUTPUT_FORMAT": (("audio.default_format",), str),
    # the multi-tenant platform (docs/platform.md); secrets are SecretStr in PlatformArgs
    "AUTH_ENABLED": (("platform.auth_enabled",), _bool),
    "QTTS_DATA_DIR": (("platform.data_dir",), str),
    "DATABASE_URL": (("platform.database_url",), str),
    "ADMIN_DATABASE_URL": (("platform.admin_database_url",), str),
    "BILLING_CURRENCY": (("platform.billing.currency",), str),
    "REDIS_URL": (("platform.redis_url",), str),
    "REDIS_KEY_PREFIX": (("platform.redis_key_prefix",), str),
    "BLOB_STORE_URL": (("platform.blob_store_url",), str),
    "VOICE_ENCRYPTION_KEYS": (("platform.voice_encryption_keys",), str),
    "VOICE_ENCRYPTION_KEY": (("platform.voice_encryption_keys",), str),
    "API_KEY_PEPPER": (("platform.api_key_pepper",), str),
    "ADMIN_TOKEN": (("platform.admin_token",), str),
    "TRUSTED_NETWORKS": (("platform.trusted_networks",), _csv),
    "TRUSTED_NETWORK_TENANT": (("platform.trusted_network_tenant",), str),
    # Home Assistant's Wyoming server (serve_app.wyoming, docs/clients.md)
    "WYOMING_ENABLED": (("wyoming.enabled",), _bool),
    "WYOMING_HOST": (("wyoming.host",), str),
    "WYOMING_PORT": (("wyoming.port",), int),
    "WYOMING_TENANT": (("wyoming.tenant",), str),
    "WYOMING_SAMPLE_RATE": (("wyoming.sample_rate",), int),
    "WYOMING_DEFAULT_VOICE": (("wyoming.default_voice",), str),
    "WYOMING_ZEROCONF": (("wyoming.zeroconf",), _bool),
    "WYOMING_MAX_CONNECTIONS": (("wyoming.max_connections",), int),
    "WYOMING_MAX_CONNECTIONS_PER_PEER": (("wyoming.max_connections_per_peer",), int),
}


def _set_if_unset(data: dict, path: str, value: Any) -> None:
    *parents, leaf = path.split(".")
    node = data
    for key in parents:
        if node.get(key) is None:
            if key in _MODEL_SECTIONS and not path.endswith(".engine.model"):
                return  # a device/dtype setting does not add a model to the graph
            node[key] = {}
        node = node[key]
    node.setdefault(leaf, value)


def apply_environment(args: AppArgs, env: Mapping[str, str] | None = None) -> AppArgs:
    """Return `args` with unset fields filled from environment variables."""
    env = os.environ if env is None else env
    data = args.model_dump(exclude_unset=True, mode="json")
    for name, (paths, convert) in ENVIRONMENT.items():
        raw = env.get(name)
        if raw is None or raw == "":
            continue
        try:
            value = convert(raw)
        except ValueError as exc:
            raise ValueError(f"environment variable {name}: {exc}") from exc
        for path in paths:
            targets = [path.replace("*", s, 1) for s in _MODEL_SECTIONS] if "*" in path else [path]
            for target in targets:
                _set_if_unset(data, target, value)
    return AppArgs.model_validate(data)
