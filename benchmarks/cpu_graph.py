"""The CPU demo graph for benchmarks that go through HTTP as a tenant would: the profile
`configs/cpu-tiny.yaml` on a fresh local Ray (8 logical CPUs), data in a temp dir, a new
admin token and one tenant's API key. Used by `alignment.py` and `speech_session.py`."""

from __future__ import annotations

import contextlib
import os
import secrets
import tempfile
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


@contextlib.contextmanager
def cpu_graph(*, aligner: bool = False) -> Iterator[tuple[str, str]]:
    """Start the graph; yield (base URL, a tenant's API key); shut Ray down after.
    `aligner`: build the tiny ForcedAligner checkpoint too (word timestamps)."""
    os.environ["QTTS_DATA_DIR"] = tempfile.mkdtemp(prefix="qtts-bench-")
    os.environ["ADMIN_TOKEN"] = secrets.token_urlsafe(24)
    import ray
    from ray import serve

    from deployments.engine.tiny import default_tiny_models_dir, ensure_tiny_models
    from serve_app.tools.cli import start_graph
    from tests.graph.conftest import free_port
    from tests.graph.tenants import create_tenant_key

    root = default_tiny_models_dir()
    ensure_tiny_models(root)
    if aligner:
        from deployments.aligner.tiny import ensure_tiny_aligner

        ensure_tiny_aligner(root)
    os.environ["QTTS_TINY_MODELS_DIR"] = str(root)
    port = free_port()
    start_graph(REPO / "configs" / "cpu-tiny.yaml", "127.0.0.1", port, num_cpus=8)
    base_url = f"http://127.0.0.1:{port}"
    try:
        yield base_url, create_tenant_key(base_url, os.environ["ADMIN_TOKEN"], "bench")
    finally:
        serve.shutdown()
        ray.shutdown()
