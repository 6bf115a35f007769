"""The graph on a multi-node Ray cluster scaled by Ray's own autoscaler (issue 24).

A head node type with CPUs only (the ingress, the AudioProcessor, the platform, the Serve
controller and proxy) and a GPU worker node type of logical GPUs (min 0, max 2 nodes, an idle
timeout of seconds), as the RayService manifest declares them for KubeRay; the real builder's
graph (CustomVoice on the tiny checkpoint, asking for one GPU per replica: a GPU node holds
one replica, as a one-GPU pod does). The tests run in order on one cluster:

1. the model replica runs on a GPU worker node the autoscaler launched for it; nothing
   GPU-bound is on the head;
2. under load CustomVoice scales to two replicas, the second is pending until the autoscaler
   launches a second node, then runs there and serves;
3. load ends: the replica count falls back and the idle node is removed;
4. a worker node killed while it streams: the raw-audio client sees an aborted transfer, the
   SSE client an error event, requests meanwhile get 503 + Retry-After, the replica is
   rescheduled (on a new node if need be) and serving resumes.

Waits are on conditions with generous bounds (a busy 2-core machine starts a node in seconds
but a replica importing torch in tens of seconds); the measured node-up, replica-ready and
recovery times are printed (`pytest -s tests/cluster/test_autoscaling_cluster.py`).
"""

from __future__ import annotations

import json
import os
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from serve_app.tools.ray_env import SERVE_ENV
from tests.cluster.fake_cluster import LocalAutoscalingCluster, free_port
from tests.graph.tenants import create_tenant_key

REPO_ROOT = Path(__file__).resolve().parents[2]
APP = "qwen3-tts"
MODEL = "CustomVoice"
GPU_NODE_TYPE = "gpu"
IDLE_TIMEOUT_S = 5
#: Bound of every wait: it returns as soon as its condition holds.
BOUND_S = 240
#: Serve's autoscaling reacting in seconds (serve_config.yaml's delays are minutes).
FAST = {"metrics_interval_s": 0.5, "look_back_period_s": 1, "upscale_delay_s": 0.5,
        "downscale_delay_s": 2, "target_ongoing_requests": 1}
#: ~40 s of audio with EOS ignored until then: long enough to be cut short.
LONG = {"model": "tts-1", "voice": "vivian", "input": "A long stream.", "response_format": "pcm",
        "min_frames": 500, "max_new_tokens": 600}


@dataclass
class Cluster:
    ray: LocalAutoscalingCluster
    base_url: str
    api_key: str
    timings: dict[str, float] = field(default_factory=dict)

    def client(self, timeout: float = 120) -> httpx.Client:
        return httpx.Client(base_url=self.base_url, timeout=timeout,
                            headers={"Authorization": f"Bearer {self.api_key}"})


def wait_for(condition: Callable[[], object], what: str, bound_s: float = BOUND_S,
             every_s: float = 0.25):
    """The condition's first truthy value, polled until `bound_s`; fails naming `what`."""
    deadline = time.monotonic() + bound_s
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"not within {bound_s} s: {what}")
        time.sleep(every_s)


def gpu_nodes() -> list[dict]:
    """Alive worker nodes of the GPU type (ray.nodes(): NodeID, NodeManagerPort, Resources)."""
    import ray

    return [n for n in ray.nodes()
            if n["Alive"] and n["Resources"].get("GPU", 0) > 0]


def replica_states() -> dict[str, int]:
    from ray import serve

    status = serve.status().applications[APP].deployments[MODEL]
    return {state: int(n) for state, n in status.replica_states.items()}


def running() -> int:
    return replica_states().get("RUNNING", 0)


def _model_status() -> str:
    from ray import serve

    status = serve.status().applications[APP].deployments[MODEL]
    return f"{status.status}:{dict(status.replica_states)}"


def replica_nodes(deployment: str = MODEL) -> list[str]:
    """Node ids of the alive replicas of `deployment`."""
    from ray.util.state import list_actors

    actors = list_actors(filters=[("class_name", "=", f"ServeReplica:{APP}:{deployment}"),
                                  ("state", "=", "ALIVE")], raise_on_missing_output=False)
    return [a.node_id for a in actors]


def head_node_id() -> str:
    import ray

    return next(n["NodeID"] for n in ray.nodes()
                if n["Alive"] and n["Resources"].get("GPU", 0) == 0)


@pytest.fixture(scope="module")
def cluster(tiny_models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    import ray

    if ray.is_initialized():  # a test before this one left its Ray running in this process
        pytest.fail("tests/cluster needs a fresh driver: run it before tests/graph "
                    "(pytest's default order) or on its own")
    temp = tmp_path_factory.mktemp("ray-cluster")
    env = {
        "QTTS_TINY_MODELS_DIR": str(tiny_models_dir),
        "QTTS_DATA_DIR": str(temp / "platform"),
        "ADMIN_TOKEN": secrets.token_urlsafe(24),
        "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
        # replicas and handles push autoscaling metrics every 0.5 s instead of 10 s
        "RAY_SERVE_REPLICA_AUTOSCALING_METRIC_PUSH_INTERVAL_S": "0.5",
        "RAY_SERVE_HANDLE_AUTOSCALING_METRIC_PUSH_INTERVAL_S": "0.5",
        "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled",
        **SERVE_ENV,  # the shipped Ray Serve settings, as the KubeRay pods get them
    }
    with pytest.MonkeyPatch.context() as patch:
        for name, value in env.items():
            patch.setenv(name, value)
        patch.delenv("REDIS_URL", raising=False)  # limits in process: one ingress replica
        fake = LocalAutoscalingCluster(
            head_resources={"CPU": 4, "object_store_memory": 200 * 2**20},
            worker_node_types={GPU_NODE_TYPE: {
                # one logical GPU and the one CPU its replica asks for: a node holds one
                # model replica and nothing else (Ray keeps CPU-only work off GPU nodes)
                "resources": {"CPU": 1, "GPU": 1, "object_store_memory": 150 * 2**20},
                "node_config": {}, "min_workers": 0, "max_workers": 2}},
            temp_dir=Path("/tmp") / f"qtts-cluster-{os.getpid()}",  # short: socket paths
            idle_timeout_s=IDLE_TIMEOUT_S)
        # a lost node is noticed within ~3 s (Ray's default health check: ~30 s)
        fake.start(_system_config={"health_check_period_ms": 1000,
                                   "health_check_failure_threshold": 3,
                                   "health_check_timeout_ms": 2000})
        # Ray's state API and CLI find the cluster by this (others may run on the machine)
        patch.setenv("RAY_ADDRESS", fake.address)
        try:
            ray.init(address=fake.address, logging_level="WARNING", log_to_driver=False)
            cluster = _deploy(fake)
            yield cluster
            print("\ncluster timings (s): " + json.dumps(
                {k: round(v, 1) for k, v in cluster.timings.items()}))
        finally:
            # no serve.shutdown (5-10 s of draining): the whole cluster goes with its processes
            try:
                ray.shutdown()
            finally:
                fake.shutdown()


def _deploy(fake: LocalAutoscalingCluster) -> Cluster:
    from ray import serve

    from serve_app.app.builder import build_graph
    from serve_app.tools.profiles import load_profile

    profile = load_profile(REPO_ROOT / "configs" / "cpu-tiny.yaml")
    args = profile.args.model_copy(update={
        "voice_design": None, "voice_clone": None, "aligner": None,
        "ingress": profile.args.ingress.model_copy(update={"cache_enabled": False})})
    small = {"num_replicas": 1, "ray_actor_options": {"num_cpus": 0.25}}
    overrides = {
        MODEL: {**profile.overrides[MODEL], "num_replicas": "auto",
                "ray_actor_options": {"num_cpus": 1, "num_gpus": 1},
                "autoscaling_config": {"min_replicas": 1, "max_replicas": 2, **FAST}},
        "AudioProcessor": small,
        "TTSIngress": small,
    }
    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port, "location": "HeadOnly"})
    started = time.monotonic()
    # not serve.run: it would wait without bound for a node that may never come
    serve.run_many([serve.RunTarget(build_graph(args, overrides), name=APP, route_prefix="/",
                                    logging_config=profile.logging_config)],
                   wait_for_applications_running=False)
    wait_for(lambda: serve.status().applications[APP].status == "RUNNING",
             "the graph RUNNING (its model replica on a GPU node the autoscaler adds)")
    base_url = f"http://127.0.0.1:{port}"
    key = create_tenant_key(base_url, os.environ["ADMIN_TOKEN"], "cluster-tests")
    cluster = Cluster(ray=fake, base_url=base_url, api_key=key)
    cluster.timings["deploy_with_first_gpu_node"] = time.monotonic() - started
    return cluster


@pytest.mark.timeout(600)
def test_model_replicas_run_on_a_gpu_node_the_autoscaler_added_and_none_on_the_head(cluster):
    assert len(gpu_nodes()) == 1  # min_workers 0: launched because the replica needed a GPU
    head = head_node_id()
    model_nodes = replica_nodes()
    assert len(model_nodes) == 1 and head not in model_nodes
    gpu_node_ids = {n["NodeID"] for n in gpu_nodes()}
    for deployment in ("TTSIngress", "AudioProcessor"):
        assert set(replica_nodes(deployment)) == {head}, deployment
    assert not set(replica_nodes("TTSIngress")) & gpu_node_ids
    with cluster.client() as client:
        r = client.post("/api/tts/synthesize", json={"text": "On a worker node.", "seed": 1})
    assert r.status_code == 200 and r.json()["success"], r.text


@pytest.mark.timeout(600)
def test_load_adds_a_node_for_the_pending_replica_which_then_serves(cluster):
    stop = threading.Event()
    served: list[int] = []

    def load(worker: int) -> None:
        with cluster.client() as client:
            i = 0
            while not stop.is_set():
                r = client.post("/api/tts/synthesize", json={
                    "text": "Scaling up under load.", "seed": worker * 1000 + i})
                served.append(r.status_code)
                i += 1

    before = {n["NodeID"] for n in gpu_nodes()}
    threads = [threading.Thread(target=load, args=(w,), daemon=True) for w in range(4)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    try:
        # Serve asks for a second replica, which no node can hold: pending
        wait_for(lambda: sum(replica_states().values()) >= 2, "a second replica requested")
        pending_at = time.monotonic()
        second = wait_for(lambda: len(gpu_nodes()) == 2 and gpu_nodes(),
                          "the autoscaler launched a second GPU node")
        node_up_at = time.monotonic()
        wait_for(lambda: running() == 2, "the second replica RUNNING")
        ready_at = time.monotonic()
        (new_node,) = {n["NodeID"] for n in second} - before
        assert new_node in replica_nodes(), "the new replica is not on the new node"
        assert set(replica_nodes()) == {n["NodeID"] for n in second}, "one replica per node"
        served_before = len(served)
        wait_for(lambda: len(served) >= served_before + 4, "requests served with 2 replicas")
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=120)
    assert set(served) == {200}, sorted(set(served))
    cluster.timings.update({
        "scale_up_request": pending_at - started,
        "node_up": node_up_at - pending_at,
        "replica_ready_after_node_up": ready_at - node_up_at,
        "pending_to_serving": ready_at - pending_at,
    })


@pytest.mark.timeout(600)
def test_when_load_ends_the_replica_and_then_its_idle_node_are_removed(cluster):
    started = time.monotonic()
    wait_for(lambda: running() == 1 and sum(replica_states().values()) == 1,
             "CustomVoice back to one replica")
    scaled_down_at = time.monotonic()
    wait_for(lambda: len(gpu_nodes()) == 1, "the idle GPU node removed")
    removed_at = time.monotonic()
    assert replica_nodes()[0] == gpu_nodes()[0]["NodeID"]
    cluster.timings.update({"replica_scale_down": scaled_down_at - started,
                            "idle_node_removed": removed_at - scaled_down_at})
    with cluster.client() as client:
        r = client.post("/api/tts/synthesize", json={"text": "Still serving.", "seed": 2})
    assert r.status_code == 200, r.text


class _Stream(threading.Thread):
    """A streaming request read on its own thread: what arrived and how it ended."""

    def __init__(self, cluster: Cluster, body: dict):
        super().__init__(daemon=True)
        self.cluster, self.body = cluster, body
        self.first = threading.Event()
        self.data = b""
        self.error: BaseException | None = None
        self.status = 0

    def run(self) -> None:
        try:
            with self.cluster.client() as client, \
                    client.stream("POST", "/v1/audio/speech", json=self.body) as r:
                self.status = r.status_code
                for piece in r.iter_raw():
                    self.data += piece
                    self.first.set()
        except BaseException as exc:  # noqa: BLE001 - what the client saw is the result
            self.error = exc
        finally:
            self.first.set()


@pytest.mark.timeout(600)
def test_a_node_lost_mid_stream_fails_visibly_sheds_load_and_serving_resumes(cluster):
    (node,) = gpu_nodes()
    assert replica_nodes() == [node["NodeID"]]
    raw = _Stream(cluster, {**LONG, "stream_format": "audio"})
    sse = _Stream(cluster, {**LONG, "stream_format": "sse"})
    for stream in (raw, sse):
        stream.start()
    for stream in (raw, sse):
        assert stream.first.wait(BOUND_S) and stream.status == 200 and stream.data

    assert cluster.ray.kill_node(node["NodeID"]) >= 1
    killed_at = time.monotonic()
    raw.join(BOUND_S)
    sse.join(BOUND_S)
    assert isinstance(raw.error, httpx.RemoteProtocolError), raw.error
    events = [json.loads(line[6:]) for line in sse.data.decode().splitlines()
              if line.startswith("data: ")]
    assert sse.error is None and events[-1]["type"] == "error", events[-3:]
    assert all(e["type"] != "speech.audio.done" for e in events)
    streams_ended_at = time.monotonic()

    # meanwhile: 503 + Retry-After at once; then 200 once the replica runs again
    refused: list[tuple[float, httpx.Response]] = []
    seen: list[tuple] = []
    with cluster.client(timeout=BOUND_S) as client:
        def served_again() -> bool:
            sent = time.monotonic() - killed_at
            r = client.post("/api/tts/synthesize", json={"text": "Back?", "seed": 3})
            seen.append((round(sent, 1), round(time.monotonic() - killed_at, 1), r.status_code,
                         _model_status()))
            assert r.status_code in (200, 503), r.text
            if r.status_code == 503:
                refused.append((time.monotonic() - killed_at, r))
            return r.status_code == 200

        wait_for(served_again, "serving resumed after the node loss", every_s=0.5)
    resumed_at = time.monotonic()
    assert refused, f"no request was refused while the node was gone: {seen}"
    first_refusal_s, first = refused[0]
    assert int(first.headers["Retry-After"]) >= 1
    assert first.json()["error"]["code"] == "model_unavailable"
    dead = node["NodeID"]
    assert dead not in {n["NodeID"] for n in gpu_nodes()}
    assert replica_nodes() and dead not in replica_nodes()
    cluster.timings.update({"streams_failed_after_kill": streams_ended_at - killed_at,
                            "first_503_after_kill": first_refusal_s,
                            "recovery_kill_to_served": resumed_at - killed_at})
