"""Dependencies point down (docs/architecture.md): serve_app -> deployments -> engine and
audio. Nothing in deployments/ imports serve_app, and the engine and audio library import no
Ray, so they run and are tested without a cluster."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def _modules(folder: str) -> list[Path]:
    return sorted((ROOT / folder).rglob("*.py"))


@pytest.mark.parametrize("path", _modules("deployments"), ids=lambda p: str(p.relative_to(ROOT)))
def test_deployments_never_import_serve_app(path: Path):
    assert not {n for n in _imports(path) if n.split(".")[0] == "serve_app"}


@pytest.mark.parametrize("path", _modules("deployments/engine") + _modules("deployments/audio"),
                         ids=lambda p: str(p.relative_to(ROOT)))
def test_engine_and_audio_import_no_ray(path: Path):
    assert not {n for n in _imports(path) if n.split(".")[0] == "ray"}
