"""KubeRay CRDs as JSON Schema, for validating manifests offline (no kubectl here).

A CRD's `openAPIV3Schema` is almost JSON Schema; the API server adds three rules that
`jsonschema` does not know, applied here: unknown fields are pruned (-> additionalProperties
false unless x-kubernetes-preserve-unknown-fields), defaulted fields need not be written
(-> dropped from `required`), and x-kubernetes-int-or-string takes either type.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import jsonschema
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
#: CI checks the shared folder out next to the repo (../shared/kuberay from the repo root).
KUBERAY_DIR = REPO_ROOT.parent / "shared" / "kuberay"
KUBERAY_VERSION = "v1.7.0"


def _convert(node: Any) -> Any:
    if isinstance(node, list):
        return [_convert(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {key: _convert(value) for key, value in node.items()}
    if out.pop("x-kubernetes-int-or-string", False):
        out.pop("type", None)
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    properties = out.get("properties")
    if isinstance(properties, dict):
        if "required" in out:
            out["required"] = [r for r in out["required"]
                               if "default" not in properties.get(r, {})]
        if not out.get("x-kubernetes-preserve-unknown-fields"):
            out.setdefault("additionalProperties", False)
    return out


@functools.cache
def crd_json_schema(kind: str) -> dict:
    """JSON Schema of the served `v1` version of a KubeRay CRD (e.g. 'rayservices')."""
    path = KUBERAY_DIR / f"ray.io_{kind}.{KUBERAY_VERSION}.yaml"
    crd = yaml.safe_load(path.read_text())
    version = next(v for v in crd["spec"]["versions"] if v["name"] == "v1")
    schema = _convert(version["schema"]["openAPIV3Schema"])
    schema["properties"]["metadata"] = {"type": "object"}  # ObjectMeta: checked by the server
    return schema


def validation_errors(manifest: dict, schema: dict) -> list[str]:
    validator = jsonschema.Draft7Validator(schema)
    return [f"{'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}"
            for e in sorted(validator.iter_errors(manifest), key=lambda e: list(e.path))]
