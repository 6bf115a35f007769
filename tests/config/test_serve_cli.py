"""`serve build` of the app and `serve deploy` of the CPU profile, with Ray's own CLI."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import pytest
import yaml

from tests.processes import stop_process_group

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def _env(**extra: str) -> dict[str, str]:
    return {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled",
            "HF_HUB_OFFLINE": "1", **extra}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_serve_build_emits_a_config_with_the_whole_graph(tmp_path):
    out = tmp_path / "built.yaml"
    subprocess.run([str(BIN / "serve"), "build", "serve_app.app.published:app", "-o", str(out)],
                   cwd=REPO, env=_env(), check=True, capture_output=True, timeout=180)
    built = yaml.safe_load(out.read_text())
    names = {d["name"] for d in built["applications"][0]["deployments"]}
    assert names == {"CustomVoice", "VoiceDesign", "VoiceClone", "AudioProcessor", "TTSIngress"}


# Bounds, not windows (each wait returns as soon as its condition holds): on a loaded 2-core
# box `ray start` and five replicas importing torch took longer than the 300 s this test had.
HEAD_BOUND_S, DEPLOY_BOUND_S, RUNNING_BOUND_S = 180, 300, 600


@pytest.mark.skipif(shutil.which("ray", path=str(BIN)) is None, reason="ray CLI not installed")
@pytest.mark.timeout(HEAD_BOUND_S + DEPLOY_BOUND_S + RUNNING_BOUND_S + 120)
def test_serve_deploy_of_the_cpu_profile_serves_requests(tmp_path, tiny_models_dir):
    gcs, dashboard, http_port = _free_port(), _free_port(), _free_port()
    config = yaml.safe_load((REPO / "configs" / "cpu-tiny.yaml").read_text())
    config["http_options"]["port"] = http_port
    config["applications"][0]["runtime_env"]["env_vars"]["QTTS_TINY_MODELS_DIR"] = str(tiny_models_dir)
    # authentication is on in the profile: a tenant and key in the deployment's platform DB
    from serve_app.platform import PlatformArgs
    from serve_app.platform.service import Platform

    data_dir = tmp_path / "platform"
    config["applications"][0]["runtime_env"]["env_vars"]["QTTS_DATA_DIR"] = str(data_dir)
    platform = Platform.open(PlatformArgs(data_dir=str(data_dir)))
    platform.tenants.create("deploy-test")
    key = platform.keys.create("deploy-test").secret
    platform.close()
    deploy_file = tmp_path / "cpu-tiny.yaml"
    deploy_file.write_text(yaml.safe_dump(config))
    env = _env(QTTS_TINY_MODELS_DIR=str(tiny_models_dir))
    # --block keeps the head in this process group, so it stops without `ray stop`
    # (which would kill every Ray on the machine, the graph tests' one included).
    head = subprocess.Popen(
        [str(BIN / "ray"), "start", "--head", "--block", f"--port={gcs}", "--num-cpus=8",
         "--include-dashboard=true", f"--dashboard-port={dashboard}",
         f"--temp-dir={tempfile.mkdtemp(prefix='qtts-ray-')}"],  # short: socket paths
        cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        address = f"http://127.0.0.1:{dashboard}"
        _wait(lambda: httpx.get(f"{address}/api/version", timeout=5).status_code == 200,
              HEAD_BOUND_S)
        subprocess.run([str(BIN / "serve"), "deploy", str(deploy_file), "-a", address],
                       cwd=REPO, env=env, check=True, capture_output=True, timeout=DEPLOY_BOUND_S)
        base = f"http://127.0.0.1:{http_port}"

        def running() -> bool:
            # what `serve status` reads, without starting a Python process (~3 s of CPU) a poll
            apps = httpx.get(f"{address}/api/serve/applications/", timeout=30).json()
            statuses = {name: app["status"] for name, app in apps["applications"].items()}
            deployments = {d: info["status"] for app in apps["applications"].values()
                           for d, info in app["deployments"].items()}
            assert "DEPLOY_FAILED" not in {*statuses.values(), *deployments.values()}, \
                apps["applications"]
            return bool(statuses) and set(statuses.values()) == {"RUNNING"} and \
                set(deployments.values()) == {"HEALTHY"}

        _wait(running, RUNNING_BOUND_S)
        assert httpx.get(f"{base}/api/health", timeout=30).json()["model_loaded"] is True
        body = {"text": "Deployed.", "language": "en", "speaker": "Ryan"}
        assert httpx.post(f"{base}/api/tts/synthesize", timeout=60, json=body).status_code == 401
        response = httpx.post(f"{base}/api/tts/synthesize", timeout=120, json=body,
                              headers={"X-API-Key": key})
        assert response.status_code == 200 and response.json()["success"] is True
    finally:
        stop_process_group(head.pid)
        head.wait(timeout=30)


def _wait(check, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except AssertionError:
            raise
        except Exception as exc:  # noqa: BLE001 - not up yet
            last = exc
        time.sleep(1)
    raise TimeoutError(f"not ready after {timeout_s}s (last error: {last!r})")
