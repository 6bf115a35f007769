"""One local Ray and one serve graph (the CPU profile) shared by every graph test.

Starting Ray and the graph costs ~15 s on 2 cores, so it happens once per session; tests
talk to it over real HTTP (httpx, the openai SDK) and through the real handle API.

The graph is the graph tests' alone, so it goes when the last of them ends, not at the end of
the session: the platform and unit tests that run after them (pytest's default order) would
otherwise share the two cores and the memory with an idle graph's processes (a dozen
replicas, each pushing autoscaling metrics every 0.5 s), and the real-shape engine tests
need that memory. `GRAPH_LIFETIME` holds the graph and the session fixtures on it; the
hook below closes it after the last graph test's teardown.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import socket
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.graph.tenants import create_tenant_key

REPO_ROOT = Path(__file__).resolve().parents[2]
CPU_PROFILE = REPO_ROOT / "configs" / "cpu-tiny.yaml"
GRAPH_DIR = Path(__file__).resolve().parent
#: The shared graph and the session fixtures on it, closed (last opened, first closed) when
#: the last graph test ends, or at the end of the session, whichever comes first.
GRAPH_LIFETIME = contextlib.ExitStack()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None):
    result = yield  # the item's own fixtures first
    graph_tests = [it for it in item.session.items if GRAPH_DIR in it.path.parents]
    if graph_tests and item is graph_tests[-1]:  # no graph test comes after this one
        GRAPH_LIFETIME.close()
    return result


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass(frozen=True)
class Graph:
    base_url: str
    app_name: str
    metrics_url: str  # Ray's metrics agent (Prometheus text), as KubeRay's :8080 is
    api_key: str = ""  # a key of the tenant `graph-tests` (the profile requires keys)
    admin_token: str = ""
    redis: bool = False  # limits go through the local Redis

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"}

    def client(self, **kw) -> httpx.Client:
        kw.setdefault("headers", self.auth)
        return httpx.Client(base_url=self.base_url, timeout=120, **kw)


def _redis_up() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 6379), timeout=1) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def _platform_environment(data_dir: Path) -> bool:
    """The platform settings of the graph (serve_app.app.settings reads them when it is built):
    SQLite and blobs in a fresh directory, an admin token, Redis-backed limits when the local
    Redis runs (a fresh key prefix)."""
    os.environ["QTTS_DATA_DIR"] = str(data_dir)
    os.environ["ADMIN_TOKEN"] = secrets.token_urlsafe(24)
    redis = _redis_up()
    if redis:
        os.environ["REDIS_URL"] = "redis://127.0.0.1:6379/0"
        os.environ["REDIS_KEY_PREFIX"] = f"qtts-graph-{uuid.uuid4().hex[:8]}"
    return redis




@pytest.fixture(scope="session")
def graph(tiny_models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Graph]:
    os.environ["QTTS_TINY_MODELS_DIR"] = str(tiny_models_dir)
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    # Autoscaling metrics every 0.5 s instead of 10 s, so scaling tests take seconds
    # (replicas and handles read these when they start, hence before ray.init).
    os.environ["RAY_SERVE_REPLICA_AUTOSCALING_METRIC_PUSH_INTERVAL_S"] = "0.5"
    os.environ["RAY_SERVE_HANDLE_AUTOSCALING_METRIC_PUSH_INTERVAL_S"] = "0.5"
    import ray

    from serve_app.tools.cli import start_graph
    from serve_app.tools.ray_env import apply_serve_env

    apply_serve_env()  # the shipped Ray Serve settings, as `qtts demo` starts Ray with them
    redis = _platform_environment(tmp_path_factory.mktemp("platform"))
    port, metrics_port = free_port(), free_port()
    # logical CPUs: the profile's fractional replicas fit whatever the machine has; logical
    # GPUs: the cluster tests pack GPU-asking replicas as on a GPU node
    # log_to_driver=False: every replica's log lines stay in the session's log directory
    # (logs/serve/ under ray's temp dir) instead of flooding the test run's output
    ray.init(num_cpus=8, num_gpus=2, include_dashboard=False, logging_level="WARNING",
             log_to_driver=False, _metrics_export_port=metrics_port,
             _system_config={"metrics_report_interval_ms": 1000})
    # no serve.shutdown (it drains every app first): the whole local cluster goes with
    # ray.shutdown, its processes included
    GRAPH_LIFETIME.callback(ray.shutdown)
    try:
        profile = start_graph(CPU_PROFILE, "127.0.0.1", port)
        base_url = f"http://127.0.0.1:{port}"
        key = create_tenant_key(base_url, os.environ["ADMIN_TOKEN"], "graph-tests")
    except BaseException:
        GRAPH_LIFETIME.close()
        raise
    try:
        yield Graph(base_url=base_url, app_name=profile.app_name,
                    metrics_url=f"http://127.0.0.1:{metrics_port}/metrics", api_key=key,
                    admin_token=os.environ["ADMIN_TOKEN"], redis=redis)
    finally:
        GRAPH_LIFETIME.close()  # already closed after the last graph test


@pytest.fixture()
def http(graph: Graph) -> Iterator[httpx.Client]:
    with graph.client() as client:
        yield client


#: Deployment options of the tests' own apps: deleting one waits for its replicas to wind
#: down, 2 s a replica by Ray Serve's defaults (its graceful-shutdown poll); a test app has
#: nothing in flight to drain by then.
QUICK_SHUTDOWN = {"graceful_shutdown_wait_loop_s": 0.1, "graceful_shutdown_timeout_s": 2}

#: A second, small application on the shared Ray (CustomVoice, AudioProcessor, ingress), for
#: tests that must change settings or kill a replica without disturbing the main graph.
EDGE_APP = "edge"
#: The networks the edge app trusts for keyless seed calls (the tests call from loopback).
EDGE_TRUSTED_NETWORKS = ["127.0.0.0/8", "::1/128"]


@contextlib.contextmanager
def small_app(graph: Graph, name: str, *, ingress_replicas: int = 1, **updates) -> Iterator[str]:
    """A CustomVoice-only copy of the CPU profile served under /<name> on the shared Ray
    (`updates`: AppArgs sections to replace, e.g. platform=...); deleted on exit. No
    ForcedAligner unless `updates` names one: its replica's start (qwen-asr's imports) would
    add seconds to every app, and word timestamps fall back to the estimate without it."""
    from ray import serve

    from serve_app.app.builder import build_graph
    from serve_app.tools.profiles import load_profile

    profile = load_profile(CPU_PROFILE)
    args = profile.args.model_copy(update={"voice_design": None, "voice_clone": None, "aligner": None, **updates})
    small = {"ray_actor_options": {"num_cpus": 0.1}, **QUICK_SHUTDOWN}
    overrides = {"CustomVoice": {**profile.overrides["CustomVoice"], **QUICK_SHUTDOWN,
                                 "ray_actor_options": {"num_cpus": 0.1, "num_gpus": 0}},
                 "VoiceClone": QUICK_SHUTDOWN, "VoiceDesign": QUICK_SHUTDOWN,
                 "AudioProcessor": {"num_replicas": 1, **small},
                 "TTSIngress": {"num_replicas": ingress_replicas, **small}}
    serve.run(build_graph(args, overrides), name=name, route_prefix=f"/{name}")
    try:
        yield f"{graph.base_url}/{name}"
    finally:
        serve.delete(name)


@pytest.fixture(scope="session")
def edge_app(graph: Graph) -> Iterator[str]:
    from serve_app.tools.profiles import load_profile

    defaults = load_profile(CPU_PROFILE).args
    # deleted with the graph (GRAPH_LIFETIME), before it
    yield GRAPH_LIFETIME.enter_context(small_app(
        graph, EDGE_APP,
        platform=defaults.platform.model_copy(update={"trusted_networks": EDGE_TRUSTED_NETWORKS}),
        ingress=defaults.ingress.model_copy(update={
            "cache_enabled": False, "session_idle_timeout_s": 2.0,
            "session_start_timeout_s": 30.0})))
