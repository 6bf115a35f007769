"""Every serve config is checked strictly: Ray drops unknown keys silently, we do not."""

from __future__ import annotations

import copy
import os
from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from serve_app.app.args import ALL_DEPLOYMENTS, MODEL_DEPLOYMENTS, PUBLISHED_CHECKPOINTS
from serve_app.tools.profiles import ConfigError, load_profile, validate_config
from serve_app.tools.ray_env import SERVE_ENV, apply_serve_env

REPO = Path(__file__).resolve().parents[2]
CONFIGS = [REPO / "serve_config.yaml", *sorted((REPO / "configs").glob("*.yaml"))]


def raw(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def deployments(config: dict) -> dict[str, dict]:
    return {d["name"]: d for d in config["applications"][0]["deployments"]}


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_config_validates_strictly_and_names_every_deployment(path):
    config = raw(path)
    validate_config(config, path.name)
    assert set(deployments(config)) == set(ALL_DEPLOYMENTS)
    load_profile(path)


@pytest.mark.parametrize(
    "mutate, where",
    [
        (lambda c: deployments(c)["CustomVoice"].update(max_ongoing_requestz=4), "max_ongoing_requestz"),
        (lambda c: deployments(c)["CustomVoice"]["autoscaling_config"].update(min_replica=1),
         "min_replica"),
        (lambda c: c["applications"][0].update(rout_prefix="/"), "rout_prefix"),
        (lambda c: c.update(http_option={}), "http_option"),
    ],
)
def test_a_typo_in_ray_keys_is_an_error(mutate, where):
    config = copy.deepcopy(raw(REPO / "serve_config.yaml"))
    mutate(config)
    with pytest.raises(ConfigError, match=where):
        validate_config(config)


def test_a_typo_in_app_args_is_an_error():
    config = copy.deepcopy(raw(REPO / "serve_config.yaml"))
    config["applications"][0]["args"]["custom_voice"]["max_batch_sise"] = 4
    with pytest.raises(ValidationError, match="max_batch_sise"):
        validate_config(config)


def test_an_unknown_deployment_name_is_an_error():
    config = copy.deepcopy(raw(REPO / "configs" / "cpu-tiny.yaml"))
    config["applications"][0]["deployments"].append({"name": "CustomVoise", "num_replicas": 1})
    with pytest.raises(ConfigError, match="CustomVoise"):
        validate_config(config)


def test_cpu_profile_asks_for_no_gpu_and_serves_tiny_checkpoints():
    config = raw(REPO / "configs" / "cpu-tiny.yaml")
    for name, dep in deployments(config).items():
        assert dep["ray_actor_options"].get("num_gpus", 0) == 0, name
    profile = load_profile(REPO / "configs" / "cpu-tiny.yaml")
    for server in profile.args.model_servers().values():
        assert server.engine.model.startswith("tiny:") and server.engine.device == "cpu"


def test_single_gpu_profile_packs_all_models_on_one_card():
    config = raw(REPO / "configs" / "single-gpu.yaml")
    gpus = [deployments(config)[n]["ray_actor_options"]["num_gpus"] for n in MODEL_DEPLOYMENTS]
    assert all(0 < g < 1 for g in gpus) and sum(gpus) <= 1.0


def test_production_config_serves_the_published_checkpoints_on_gpus():
    profile = load_profile(REPO / "serve_config.yaml")
    models = {k: v.engine.model for k, v in
              {"custom_voice": profile.args.custom_voice, "voice_design": profile.args.voice_design,
               "voice_clone": profile.args.voice_clone}.items()}
    assert models == PUBLISHED_CHECKPOINTS
    config = raw(REPO / "serve_config.yaml")
    for name in MODEL_DEPLOYMENTS:
        dep = deployments(config)[name]
        assert dep["ray_actor_options"]["num_gpus"] >= 1
        assert dep["max_queued_requests"] > 0 and "autoscaling_config" in dep


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_the_ingress_has_serve_slots_beyond_what_its_gates_let_work_hold(path):
    """Synthesis (MAX_CONCURRENT), speech sessions and unauthenticated sockets together hold
    at most `socket_budget` of an ingress replica's Serve slots; `max_ongoing_requests` must
    leave PROBE_HEADROOM beyond it, or Serve's proxy queues health checks behind work."""
    from serve_app.app.ingress import TTSIngress

    profile = load_profile(path)
    slots = profile.overrides["TTSIngress"].get(
        "max_ongoing_requests", TTSIngress._deployment_config.max_ongoing_requests)
    assert slots >= profile.args.ingress.min_serve_slots, (slots, profile.args.ingress)


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_every_config_gives_its_replicas_the_shipped_ray_serve_settings(path):
    # serve_app/tools/ray_env.py is the one source: `serve deploy` of any config runs its
    # replicas with it, as the demo, the tests and the benchmarks do (apply_serve_env)
    env_vars = raw(path)["applications"][0].get("runtime_env", {}).get("env_vars", {})
    assert {k: env_vars.get(k) for k in SERVE_ENV} == SERVE_ENV


def test_the_ray_serve_settings_fill_only_what_the_operator_left_unset(monkeypatch):
    name = next(iter(SERVE_ENV))
    for var in SERVE_ENV:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv(name, "1")
    apply_serve_env()
    assert os.environ[name] == "1"
    assert all(os.environ[v] == SERVE_ENV[v] for v in SERVE_ENV if v != name)
