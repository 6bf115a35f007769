"""Dependencies point down (docs/architecture.md): serve_app -> deployments -> engine and
audio. Nothing in deployments/ imports serve_app, and the engine and audio library import no
Ray, so they run and are tested without a cluster.

Inside serve_app/ the folders are layers (serve_app/__init__.py), and every import counts,
those under TYPE_CHECKING and inside functions too: no module imports one that imports it
back (no cycle), and no module imports a layer above its own (protocol/ and the platform at
the bottom, then the edge, synthesis, sessions, routes, the app, the tools). The app's args
and settings are the configuration every layer reads."""

from __future__ import annotations

import ast
import functools
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

#: serve_app's layers, bottom first: a module may import its own layer and those below.
LAYERS = {"protocol": 0, "platform": 0, "edge": 1, "synthesis": 2, "text": 2, "sessions": 3,
          "routes": 4, "wyoming": 4, "app": 5, "tools": 6}
#: Configuration, read by every layer.
CONFIG = {"serve_app.app.args", "serve_app.app.settings"}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def _modules(folder: str) -> list[Path]:
    return sorted((ROOT / folder).rglob("*.py"))


def _name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


SERVE_APP = {_name(p): p for p in _modules("serve_app")}


@functools.cache
def _graph() -> dict[str, set[str]]:
    """serve_app's modules -> the serve_app modules each imports (a `from pkg import mod`
    counts as importing `pkg.mod`). Parsed once per run: every layer test reads the same
    sources (parsing all of them again for each of ~130 modules took ~60 s)."""
    return {name: {n for n in _imports(path) if n in SERVE_APP and n != name}
            for name, path in SERVE_APP.items()}


def _layer(module: str) -> int | None:
    parts = module.split(".")
    return LAYERS.get(parts[1]) if len(parts) > 2 else None


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    return found


@pytest.mark.parametrize("path", _modules("deployments"), ids=lambda p: str(p.relative_to(ROOT)))
def test_deployments_never_import_serve_app(path: Path):
    assert not {n for n in _imports(path) if n.split(".")[0] == "serve_app"}


@pytest.mark.parametrize("path", _modules("deployments/engine") + _modules("deployments/audio"),
                         ids=lambda p: str(p.relative_to(ROOT)))
def test_engine_and_audio_import_no_ray(path: Path):
    assert not {n for n in _imports(path) if n.split(".")[0] == "ray"}


def test_serve_app_has_no_import_cycle():
    assert _cycles(_graph()) == []


def test_the_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_every_serve_app_module_is_in_a_layer():
    assert not [m for m in SERVE_APP if m.count(".") > 1 and _layer(m) is None]


@pytest.mark.parametrize("module", sorted(m for m in SERVE_APP if _layer(m) is not None))
def test_no_import_reaches_a_layer_above(module: str):
    own = _layer(module)
    upward = {n for n in _graph()[module]
              if n not in CONFIG and (_layer(n) or 0) > own}
    assert not upward, f"{module} imports a layer above its own: {sorted(upward)}"


@pytest.mark.parametrize("folder", ["protocol", "edge", "synthesis", "sessions", "platform"])
def test_nothing_below_the_routes_imports_them(folder: str):
    graph = _graph()
    into_routes = {(m, n) for m in graph if m.startswith(f"serve_app.{folder}.")
                   for n in graph[m] if n.startswith("serve_app.routes")}
    assert not into_routes


def test_no_module_name_is_used_twice():
    names = [p.stem for p in _modules("serve_app") if p.stem != "__init__"]
    assert sorted({n for n in names if names.count(n) > 1}) == []
