"""docker-compose.yml (one GPU host) in step with the profile it serves, the image it builds
and the settings it passes; `docker compose config` where a Docker engine is installed."""

from __future__ import annotations

import fnmatch
import math
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from serve_app.app.settings import ENVIRONMENT
from serve_app.tools.ray_env import SERVE_ENV

REPO = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((REPO / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]
TTS = SERVICES["tts"]
ENV_EXAMPLE = REPO / "qtts.env.example"
#: What the postgres image reads from the shared env file (not settings of ours).
POSTGRES_ENV = {"POSTGRES_USER", "POSTGRES_PASSWORD", "POSTGRES_DB"}


def _profile() -> tuple[Path, dict]:
    config = next(word for word in TTS["command"] if word.endswith(".yaml"))
    return REPO / config, yaml.safe_load((REPO / config).read_text())


def _dockerfile_env() -> dict[str, str]:
    text = re.sub(r"\\\n", " ", (REPO / TTS["build"]["dockerfile"]).read_text())
    env: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith("ENV "):
            env.update(re.findall(r"(\w+)=(\S+)", line))
    return env


def _env_example() -> dict[str, str]:
    pairs = [ln.split("=", 1) for ln in ENV_EXAMPLE.read_text().splitlines()
             if ln.strip() and not ln.startswith("#")]
    return {k: v for k, v in pairs}


def test_the_graph_serves_the_single_gpu_profile_on_the_published_port():
    path, profile = _profile()
    assert path == REPO / "configs" / "single-gpu.yaml"
    assert TTS["command"][:2] == ["serve", "run"]  # Ray Serve's runner, in the image's venv
    http = profile["http_options"]
    assert http["host"] == "0.0.0.0"
    published = {int(p.split(":")[-1]): int(p.split(":")[-2]) for p in TTS["ports"]}
    assert http["port"] in published, f"the profile listens on {http['port']}: {TTS['ports']}"


def test_the_gpu_reservation_holds_every_model_replica_of_the_profile():
    _, profile = _profile()
    gpus = sum(float((d.get("ray_actor_options") or {}).get("num_gpus", 0))
               * int(d.get("num_replicas", 1))
               for app in profile["applications"] for d in app["deployments"])
    (device,) = TTS["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia" and "gpu" in device["capabilities"]
    assert device["count"] == math.ceil(gpus) == 1


def test_the_healthcheck_asks_api_health_on_the_served_port_and_waits_for_the_models():
    _, profile = _profile()
    check = TTS["healthcheck"]
    command = " ".join(check["test"])
    assert f"127.0.0.1:{profile['http_options']['port']}/api/health" in command
    assert "healthy" in command  # the seed's status field, not just any answer
    from serve_app.routes.seed import router

    assert "/api/health" in {r.path for r in router.routes}
    seconds = {"s": 1, "m": 60, "h": 3600}
    start = check["start_period"]
    assert int(start[:-1]) * seconds[start[-1]] >= 600, "model downloads and loads take minutes"
    assert TTS["restart"] == "unless-stopped"


def test_model_cache_and_data_live_on_named_volumes():
    mounts = dict(v.split(":", 1)[::-1] for v in TTS["volumes"])  # container path -> volume
    hf_home = TTS["environment"]["HF_HOME"]
    assert hf_home == _dockerfile_env()["HF_HOME"]
    cache = next(path for path in mounts if hf_home.startswith(path + "/"))
    data = TTS["environment"]["QTTS_DATA_DIR"]
    assert data in mounts
    for service in ("postgres", "redis"):
        mounts.update(dict(v.split(":", 1)[::-1] for v in SERVICES[service]["volumes"]))
    assert set(mounts.values()) <= set(COMPOSE["volumes"]), "every volume is a named one"
    assert mounts[cache] == "model-cache"
    assert int(TTS["shm_size"].rstrip("gb")) >= 2  # Ray's object store is in /dev/shm


def test_postgres_and_redis_are_the_platforms_backends_and_are_waited_for():
    env = TTS["environment"]
    assert env["REDIS_URL"].startswith("redis://redis:6379/")
    assert _env_example()["DATABASE_URL"].startswith("postgresql://")
    assert "@postgres:5432/" in _env_example()["DATABASE_URL"]
    for service in ("postgres", "redis"):
        assert SERVICES[service]["healthcheck"]["test"], service
        assert SERVICES[service]["restart"] == "unless-stopped"
    assert TTS["depends_on"]["redis"]["condition"] == "service_healthy"
    # the schema is migrated before the graph starts (qtts admin migrate)
    migrate = SERVICES["migrate"]
    assert migrate["command"] == ["qtts", "admin", "migrate"]
    assert TTS["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert migrate["depends_on"]["postgres"]["condition"] == "service_healthy"


def test_secrets_come_from_the_env_file_only():
    example = _env_example()
    assert set(example) - POSTGRES_ENV <= set(ENVIRONMENT), "names the settings do not read"
    assert {"DATABASE_URL", "VOICE_ENCRYPTION_KEYS", "ADMIN_TOKEN"} <= set(example)
    assert all(v.startswith("CHANGE-ME") or "CHANGE-ME" in v or k in POSTGRES_ENV - {
        "POSTGRES_PASSWORD"} for k, v in example.items()), "a real secret in the example"
    for name, service in SERVICES.items():
        for key in (service.get("environment") or {}):
            assert not re.search(r"PASSWORD|TOKEN|KEY|SECRET|DATABASE_URL", key), (name, key)
    assert TTS["env_file"] == ["qtts.env"]
    assert "qtts.env" in (REPO / ".gitignore").read_text().split()
    assert set(TTS["environment"]) <= set(ENVIRONMENT) | {"HF_HOME", "RAY_AUTH_MODE", *SERVE_ENV}


def test_ray_serve_runs_with_the_shipped_settings_proxy_included():
    # `serve run` starts the container's Ray: its proxy reads the container's environment
    assert {k: TTS["environment"].get(k) for k in SERVE_ENV} == SERVE_ENV


def _dockerignore_excludes(path: str) -> bool:
    """Docker's rule: the last matching pattern wins; `!` lets a path back in."""
    excluded = False
    for line in (REPO / ".dockerignore").read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negate, pattern = line.startswith("!"), line.lstrip("!").rstrip("/")
        parts = path.split("/")
        prefixes = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
        if pattern.startswith("**/"):
            hit = fnmatch.fnmatch(parts[-1], pattern[3:])
        else:
            hit = any(fnmatch.fnmatch(p, pattern) for p in prefixes)
        if hit:
            excluded = not negate
    return excluded


def test_the_build_context_holds_what_the_image_copies_and_no_secret():
    text = re.sub(r"\\\n", " ", (REPO / "cluster" / "Dockerfile").read_text())
    sources = []
    for line in text.splitlines():
        if line.startswith("COPY ") and "--from=" not in line:
            sources += [w for w in line.split()[1:-1] if not w.startswith("--")]
    assert sources
    for source in sources:
        assert not _dockerignore_excludes(source), f".dockerignore drops {source}"
        if (REPO / source).is_dir():
            for f in (REPO / source).rglob("*.py"):
                if "__pycache__" not in f.parts:
                    assert not _dockerignore_excludes(str(f.relative_to(REPO))), f
    for private in ("qtts.env", ".venv/bin/python", ".git/config", "tests/conftest.py",
                    "tiny-models/custom_voice/config.json", "deployments/__pycache__/x.pyc"):
        assert _dockerignore_excludes(private), private


def _has_compose() -> bool:
    if shutil.which("docker") is None:
        return False
    return subprocess.run(["docker", "compose", "version"], capture_output=True,
                          timeout=30).returncode == 0


@pytest.mark.skipif(not _has_compose(), reason="no docker compose (v2) on this machine")
def test_docker_compose_config_accepts_the_file(tmp_path):
    env = tmp_path / "qtts.env"
    env.write_text(ENV_EXAMPLE.read_text())
    shutil.copy(REPO / "docker-compose.yml", tmp_path / "docker-compose.yml")
    result = subprocess.run(["docker", "compose", "-f", str(tmp_path / "docker-compose.yml"),
                             "config", "--quiet"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
