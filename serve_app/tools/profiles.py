"""Serve configs (serve_config.yaml, configs/*.yaml): strict loading and running from Python.

Ray's own schema silently drops unknown keys, so `load_profile` checks every key against the
schema it belongs to (Ray's deployment/application schemas, the autoscaling config, AppArgs)
and fails on the first unknown one. `qtts demo` and the graph tests run a profile through
`build_graph` with the profile's `deployments:` entries as `.options()` overrides, so they run
exactly what `serve deploy` of the same file would.
"""

from __future__ import annotations

import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel
from ray.serve.config import AutoscalingConfig
from ray.serve.schema import ServeDeploySchema

from serve_app.app.args import ALL_DEPLOYMENTS, AppArgs

BUILDER_IMPORT_PATH = "serve_app.app.builder:build_app"

# Free-form dicts in Ray's schema whose keys we still check, and against what.
_DICT_SCHEMAS: dict[str, type[BaseModel]] = {"autoscaling_config": AutoscalingConfig}
_FREE_FORM = {"runtime_env", "user_config", "env_vars", "args"}


class ConfigError(ValueError):
    """A serve config that Ray would accept silently but that is wrong."""


@dataclass(frozen=True)
class Profile:
    path: Path
    app_name: str
    route_prefix: str
    args: AppArgs
    overrides: dict[str, dict[str, Any]] = field(default_factory=dict)
    http_port: int = 8000
    logging_config: dict[str, Any] | None = None  # the application's, as serve deploy applies it


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    """The pydantic models an annotation may hold (through Optional, list, Union...)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    found: list[type[BaseModel]] = []
    if typing.get_origin(annotation) in (typing.Union, types.UnionType, list, tuple, typing.Optional):
        for arg in typing.get_args(annotation):
            found += _models_in(arg)
    return found


def check_keys(data: Any, model: type[BaseModel], where: str) -> None:
    """Raise ConfigError on the first key of `data` that `model` does not define."""
    if not isinstance(data, dict):
        return
    fields = model.model_fields
    known = set(fields) | {f.alias for f in fields.values() if f.alias}
    for key, value in data.items():
        path = f"{where}.{key}"
        if key not in known:
            raise ConfigError(f"{path}: unknown key (allowed: {', '.join(sorted(known))})")
        if key in _FREE_FORM:
            continue
        if key in _DICT_SCHEMAS:
            check_keys(value, _DICT_SCHEMAS[key], path)
            continue
        name = key if key in fields else next(n for n, f in fields.items() if f.alias == key)
        for sub in _models_in(fields[name].annotation):
            items = value if isinstance(value, list) else [value]
            for i, item in enumerate(items):
                check_keys(item, sub, f"{path}[{i}]" if isinstance(value, list) else path)
            break


def validate_config(raw: dict, where: str = "config") -> ServeDeploySchema:
    """Validate a whole serve config strictly; return Ray's parsed schema."""
    check_keys(raw, ServeDeploySchema, where)
    schema = ServeDeploySchema.model_validate(raw)
    for app in raw.get("applications", []):
        name = app.get("name", "?")
        if app.get("import_path") == BUILDER_IMPORT_PATH:
            AppArgs.model_validate(app.get("args") or {})
        for dep in app.get("deployments", []):
            if dep.get("name") not in ALL_DEPLOYMENTS:
                raise ConfigError(
                    f"{where}: application {name}: unknown deployment {dep.get('name')!r} "
                    f"(graph deployments: {', '.join(ALL_DEPLOYMENTS)})"
                )
    return schema


def load_profile(path: str | Path) -> Profile:
    path = Path(path)
    raw = yaml.safe_load(path.read_text())
    validate_config(raw, str(path))
    apps = raw["applications"]
    if len(apps) != 1 or apps[0].get("import_path") != BUILDER_IMPORT_PATH:
        raise ConfigError(f"{path}: expected one application built by {BUILDER_IMPORT_PATH}")
    app = apps[0]
    overrides = {d["name"]: {k: v for k, v in d.items() if k != "name"} for d in app.get("deployments", [])}
    return Profile(
        path=path,
        app_name=app.get("name", "default"),
        route_prefix=app.get("route_prefix", "/"),
        args=AppArgs.model_validate(app.get("args") or {}),
        overrides=overrides,
        http_port=int((raw.get("http_options") or {}).get("port", 8000)),
        logging_config=app.get("logging_config"),
    )
