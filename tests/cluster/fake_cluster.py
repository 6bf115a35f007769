"""A multi-node Ray cluster on one machine, scaled by Ray's own autoscaler.

`LocalAutoscalingCluster` is `ray.cluster_utils.AutoscalingCluster` (the fake multi-node
provider Ray tests its autoscaler with: worker nodes of declared types start as real raylets
on this machine, added and removed by the same autoscaler logic KubeRay's in-tree autoscaler
runs against pods) made safe on a shared machine:

- `AutoscalingCluster.start()` runs `ray stop --force`, which kills every Ray process on the
  machine (other people's too), and puts the GCS on port 6379 (a local Redis's port). Here the
  head starts on free ports in its own process group, with its own temp dir, and `shutdown`
  ends that process group only (the worker nodes the autoscaler starts belong to it).
- The wheel lacks the provider's example config that `_generate_config` reads: the base
  config is written out here (the autoscaler's cluster-config schema).
- `kill_node` takes a worker node down the way a lost machine goes: its raylet and every
  process under it (agents, replicas) killed at once, with no draining.

Autoscaler v2 by default: the version the RayService manifest's autoscalerOptions names.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import psutil
from ray.autoscaler._private.fake_multi_node.node_provider import FAKE_HEAD_NODE_ID
from ray.cluster_utils import AutoscalingCluster

from tests.processes import group_processes, stop_process_group

HEAD_TYPE = "ray.head.default"
#: The autoscaler's cluster config around the node types (what the fake provider's
#: example.yaml in the Ray repo holds).
BASE_CONFIG: dict[str, Any] = {
    "cluster_name": "fake_multinode",
    "max_workers": 8,
    # the provider as an external module: the "fake_multinode" type reads its defaults from
    # that example.yaml, which the wheel lacks
    "provider": {"type": "external",
                 "module": "ray.autoscaler._private.fake_multi_node.node_provider."
                           "FakeMultiNodeProvider",
                 "use_node_id_as_ip": True,
                 "disable_node_updaters": True, "disable_launch_config_check": True},
    "head_node_type": HEAD_TYPE,
    "auth": {},
    "upscaling_speed": 1.0,
    "idle_timeout_minutes": 0.1,
    "docker": {},
    "initialization_commands": [], "setup_commands": [], "head_setup_commands": [],
    "worker_setup_commands": [], "head_start_ray_commands": [], "worker_start_ray_commands": [],
    "file_mounts": {}, "cluster_synced_files": [], "file_mounts_sync_continuously": False,
    "rsync_exclude": [], "rsync_filter": [],
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LocalAutoscalingCluster(AutoscalingCluster):
    def __init__(self, head_resources: dict, worker_node_types: dict, temp_dir: Path,
                 idle_timeout_s: float, autoscaler_v2: bool = True, **config_kwargs):
        self.port = free_port()
        self.temp_dir = temp_dir
        self._pgid: int | None = None
        super().__init__(head_resources, worker_node_types, autoscaler_v2=autoscaler_v2,
                         idle_timeout_minutes=idle_timeout_s / 60, **config_kwargs)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _generate_config(self, head_resources, worker_node_types, autoscaler_v2=False,
                         **config_kwargs):
        config = json.loads(json.dumps(BASE_CONFIG))
        # worker raylets join this GCS (the provider's default is port 6379)
        config["provider"]["gcs_address"] = f"127.0.0.1:{self.port}"
        config["available_node_types"] = dict(worker_node_types)
        config["available_node_types"][HEAD_TYPE] = {
            "resources": dict(head_resources), "node_config": {}, "max_workers": 0}
        config["max_workers"] = sum(t.get("max_workers", 0) for t in worker_node_types.values())
        if autoscaler_v2:
            config["provider"]["launch_multiple"] = True
            config["provider"]["head_node_id"] = FAKE_HEAD_NODE_ID
        config.update(config_kwargs)
        return config

    def start(self, _system_config: dict | None = None, override_env: dict | None = None):
        self.temp_dir.mkdir(parents=True, exist_ok=True)
        config_path = self.temp_dir / "autoscaling-config.json"
        config_path.write_text(json.dumps(self._config))
        resources = dict(self._head_resources)
        ray = str(Path(sys.executable).with_name("ray"))
        cmd = [ray, "start", "--head", f"--port={self.port}", "--node-ip-address=127.0.0.1",
               f"--autoscaling-config={config_path}", f"--temp-dir={self.temp_dir}",
               f"--num-cpus={resources.pop('CPU', 0)}", f"--num-gpus={resources.pop('GPU', 0)}",
               f"--dashboard-port={free_port()}", f"--ray-client-server-port={free_port()}",
               f"--dashboard-agent-listen-port={free_port()}", "--disable-usage-stats"]
        if "object_store_memory" in resources:
            cmd.append(f"--object-store-memory={resources.pop('object_store_memory')}")
        if resources:
            cmd.append(f"--resources={json.dumps(resources)}")
        if _system_config:
            cmd.append(f"--system-config={json.dumps(_system_config, separators=(',', ':'))}")
        env = {**os.environ, "AUTOSCALER_UPDATE_INTERVAL_S": "1", "RAY_FAKE_CLUSTER": "1",
               "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}
        if self._autoscaler_v2:
            env.update({"RAY_enable_autoscaler_v2": "1",
                        "RAY_CLOUD_INSTANCE_ID": FAKE_HEAD_NODE_ID,
                        "RAY_OVERRIDE_NODE_ID_FOR_TESTING": FAKE_HEAD_NODE_ID})
        env.update(override_env or {})
        # its own process group: every process of this cluster (the head's, the worker nodes
        # the autoscaler starts, their workers) and nothing else
        process = subprocess.Popen(cmd, env=env, start_new_session=True, text=True,
                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self._pgid = process.pid  # the session leader's id names the group
        atexit.register(self.shutdown)  # a test run killed midway leaves no cluster behind
        output, _ = process.communicate(timeout=180)
        if process.returncode != 0:
            self.shutdown()
            raise RuntimeError(f"ray start failed:\n{output}")

    def processes(self) -> list[psutil.Process]:
        return [] if self._pgid is None else group_processes(self._pgid)

    def shutdown(self):
        if self._pgid is None:
            return
        stop_process_group(self._pgid)
        self._pgid = None

    def kill_node(self, node_id: str) -> int:
        """Kill the raylet of worker node `node_id` (a ray.nodes() NodeID) and every process
        under it at once; returns how many processes were killed. The fake provider starts
        a node's raylet with the node id it chose in its environment."""
        def of_node(proc: psutil.Process) -> bool:
            with contextlib.suppress(psutil.Error):
                return proc.name() == "raylet" and \
                    proc.environ().get("RAY_OVERRIDE_NODE_ID_FOR_TESTING") == node_id
            return False

        raylets = [p for p in self.processes() if of_node(p)]
        assert len(raylets) == 1, f"no single raylet of node {node_id}: {raylets}"
        victims = [raylets[0], *raylets[0].children(recursive=True)]
        for proc in victims:
            with contextlib.suppress(psutil.NoSuchProcess):
                proc.kill()
        return len(victims)
