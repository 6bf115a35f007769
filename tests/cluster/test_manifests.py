"""The KubeRay manifests: generated from the serve configs, valid, and able to hold the graph."""

from __future__ import annotations

import copy
import math

import pytest
import yaml
from kuberay_schema import KUBERAY_DIR, REPO_ROOT, crd_json_schema, validation_errors

from serve_app.app.args import ALIGNER, MODEL_DEPLOYMENTS
from serve_app.tools.cluster_manifest import (
    GPU_RESOURCE,
    SECRET_ENV,
    ManifestError,
    check_fits,
    load_values,
    render,
    render_file,
    serve_config_of,
)
from serve_app.tools.profiles import validate_config
from serve_app.tools.ray_env import SERVE_ENV

SIZES = sorted(p.stem for p in (REPO_ROOT / "cluster" / "values").glob("*.yaml"))
needs_crds = pytest.mark.skipif(
    not (KUBERAY_DIR / "ray.io_rayservices.v1.7.0.yaml").exists(),
    reason=f"KubeRay v1.7.0 CRDs not found in {KUBERAY_DIR} (CI checks out ../shared/kuberay)",
)


def values_path(size: str) -> str:
    return f"cluster/values/{size}.yaml"


def committed(size: str) -> list[dict]:
    return list(yaml.safe_load_all((REPO_ROOT / "cluster" / "generated" / f"{size}.yaml").read_text()))


def ray_service(docs: list[dict]) -> dict:
    return next(d for d in docs if d["kind"] == "RayService")


def containers(service: dict) -> list[tuple[str, dict, dict]]:
    """(group name, pod spec, container) for the head and every worker group."""
    cluster = service["spec"]["rayClusterConfig"]
    pods = [("head", cluster["headGroupSpec"]["template"]["spec"])]
    pods += [(g["groupName"], g["template"]["spec"]) for g in cluster["workerGroupSpecs"]]
    return [(name, pod, c) for name, pod in pods for c in pod["containers"]]


def test_there_is_a_small_and_a_large_cluster():
    assert {"small", "large"} <= set(SIZES)


@pytest.mark.parametrize("size", SIZES)
def test_committed_manifest_is_the_generators_output(size):
    path = REPO_ROOT / "cluster" / "generated" / f"{size}.yaml"
    assert path.read_text() == render_file(values_path(size)), (
        f"stale: run qtts cluster-manifest {values_path(size)} -o cluster/generated/{size}.yaml")


@pytest.mark.parametrize("size", SIZES)
def test_serve_config_v2_is_the_named_serve_config_and_validates_strictly(size):
    values = load_values(REPO_ROOT / values_path(size))
    embedded = serve_config_of(committed(size))
    assert embedded == yaml.safe_load((REPO_ROOT / values.serve_config).read_text())
    validate_config(embedded, f"{size}: serveConfigV2")


def test_the_large_cluster_serves_serve_config_yaml():
    assert load_values(REPO_ROOT / values_path("large")).serve_config == "serve_config.yaml"


@needs_crds
@pytest.mark.parametrize("size", SIZES)
def test_manifest_validates_against_the_kuberay_rayservice_crd(size):
    errors = validation_errors(ray_service(committed(size)), crd_json_schema("rayservices"))
    assert errors == []


@needs_crds
@pytest.mark.parametrize("mutate, where", [
    (lambda s: s["spec"]["rayClusterConfig"].update(enableInTreeAutoScaling=True),
     "enableInTreeAutoScaling"),
    (lambda s: s["spec"]["rayClusterConfig"]["workerGroupSpecs"][0].update(minReplicas="one"),
     "minReplicas"),
    (lambda s: s["spec"]["rayClusterConfig"]["workerGroupSpecs"][1].pop("groupName"),
     "groupName"),
])
def test_the_crd_check_catches_typos(mutate, where):
    service = copy.deepcopy(ray_service(committed("large")))
    mutate(service)
    errors = validation_errors(service, crd_json_schema("rayservices"))
    assert errors and any(where in e for e in errors), errors


@pytest.mark.parametrize("size", SIZES)
def test_every_gpu_deployment_fits_a_gpu_worker_group(size):
    service = ray_service(committed(size))
    gpu_pods = [int(c["resources"]["limits"].get(GPU_RESOURCE, 0))
                for _, _, c in containers(service)]
    config = serve_config_of(committed(size))
    asking = {d["name"]: d["ray_actor_options"]["num_gpus"]
              for d in config["applications"][0]["deployments"]
              if d.get("ray_actor_options", {}).get("num_gpus", 0) > 0}
    assert set(asking) == {*MODEL_DEPLOYMENTS, ALIGNER}
    for name, gpus in asking.items():
        assert any(pod >= gpus for pod in gpu_pods), f"{name} asks {gpus} GPU; pods have {gpu_pods}"
    assert check_fits(config, load_values(REPO_ROOT / values_path(size))) == []


@pytest.mark.parametrize("size", SIZES)
def test_gpu_worker_group_bounds_are_the_model_kinds_replica_bounds_in_gpus(size):
    """KubeRay's GPU pods go from what the kinds' fewest replicas need to what their most
    replicas need (replicas x GPUs per replica, from the serve config): the autoscaler can
    reach every kind's max_replicas, and never adds a GPU pod no replica could use."""
    config = serve_config_of(committed(size))
    fewest = most = 0.0
    for dep in config["applications"][0]["deployments"]:
        gpus = float(dep.get("ray_actor_options", {}).get("num_gpus", 0))
        auto = dep.get("autoscaling_config")
        low, high = ((auto.get("min_replicas", 1), auto["max_replicas"]) if auto
                     else (dep.get("num_replicas", 1),) * 2)
        fewest, most = fewest + gpus * low, most + gpus * high
    cluster = ray_service(committed(size))["spec"]["rayClusterConfig"]
    groups = [g for g in cluster["workerGroupSpecs"]
              if GPU_RESOURCE in g["template"]["spec"]["containers"][0]["resources"]["limits"]]
    per_pod = [int(g["template"]["spec"]["containers"][0]["resources"]["limits"][GPU_RESOURCE])
               for g in groups]
    assert sum(g["maxReplicas"] * n for g, n in zip(groups, per_pod, strict=True)) == math.ceil(most - 1e-6)
    assert sum(g["minReplicas"] * n for g, n in zip(groups, per_pod, strict=True)) == math.ceil(fewest - 1e-6)
    for group in cluster["workerGroupSpecs"]:
        assert group["idleTimeoutSeconds"] > 0, group["groupName"]
        assert group["minReplicas"] <= group["replicas"] <= group["maxReplicas"]
    options = cluster["autoscalerOptions"]
    assert options["version"] == "v2" and options["upscalingMode"] in {"Default", "Aggressive"}
    assert options["resources"]["requests"] and options["resources"]["limits"]
    # every model kind autoscales on its own in the large cluster's serve config
    if size == "large":
        kinds = {d["name"]: d for d in config["applications"][0]["deployments"]}
        assert all("autoscaling_config" in kinds[name] for name in MODEL_DEPLOYMENTS)


def test_a_deployment_too_large_for_every_gpu_pod_is_refused(tmp_path):
    config = yaml.safe_load((REPO_ROOT / "serve_config.yaml").read_text())
    for dep in config["applications"][0]["deployments"]:
        if dep["name"] == "VoiceClone":
            dep["ray_actor_options"]["num_gpus"] = 2
    (tmp_path / "serve_config.yaml").write_text(yaml.safe_dump(config))
    values = load_values(REPO_ROOT / values_path("large"))
    with pytest.raises(ManifestError, match="VoiceClone: a replica needs 2 GPU"):
        render(values, repo_root=tmp_path)


def test_minimum_replicas_beyond_the_gpu_groups_are_refused():
    config = yaml.safe_load((REPO_ROOT / "serve_config.yaml").read_text())
    values = load_values(REPO_ROOT / values_path("small"))
    assert any("minimum model replicas need" in p for p in check_fits(config, values))


@pytest.mark.parametrize("size", SIZES)
def test_pods_have_shm_secrets_and_the_head_runs_no_replicas(size):
    service = ray_service(committed(size))
    cluster = service["spec"]["rayClusterConfig"]
    assert cluster["enableInTreeAutoscaling"] is True
    assert cluster["headGroupSpec"]["rayStartParams"]["num-cpus"] == "0"
    assert cluster["headGroupSpec"]["rayStartParams"]["num-gpus"] == "0"
    assert service["spec"]["upgradeStrategy"]["type"] == "NewCluster"
    for group, pod, container in containers(service):
        volumes = {v["name"]: v for v in pod["volumes"]}
        shm = [m for m in container["volumeMounts"] if m["mountPath"] == "/dev/shm"]
        assert shm and volumes[shm[0]["name"]]["emptyDir"]["medium"] == "Memory", group
        secrets = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in container["env"]
                   if "valueFrom" in e}
        assert set(secrets) == set(SECRET_ENV), group
        assert not any(e.get("value") for e in container["env"] if e["name"] in SECRET_ENV)
        assert "metrics" in {p["name"] for p in container["ports"]}, group


@pytest.mark.parametrize("size", SIZES)
def test_every_ray_process_gets_the_shipped_ray_serve_settings(size):
    # the serve config's runtime_env reaches the replicas; the proxy reads the pod's env
    service = ray_service(committed(size))
    for group, _pod, container in containers(service):
        values = {e["name"]: e.get("value") for e in container["env"]}
        assert {k: values.get(k) for k in SERVE_ENV} == SERVE_ENV, group
    config = yaml.safe_load(service["spec"]["serveConfigV2"])
    env_vars = config["applications"][0]["runtime_env"]["env_vars"]
    assert {k: env_vars.get(k) for k in SERVE_ENV} == SERVE_ENV


@pytest.mark.parametrize("size", SIZES)
def test_gpu_pods_share_a_persistent_model_cache(size):
    docs = committed(size)
    claims = {d["metadata"]["name"] for d in docs if d["kind"] == "PersistentVolumeClaim"}
    for group, pod, container in containers(ray_service(docs)):
        if GPU_RESOURCE not in container["resources"]["limits"]:
            continue
        assert {"key": GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"} \
            in pod["tolerations"]
        assert pod.get("nodeSelector"), group
        env = {e["name"]: e.get("value") for e in container["env"]}
        mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
        cache = next(v for v in pod["volumes"] if "persistentVolumeClaim" in v)
        assert cache["persistentVolumeClaim"]["claimName"] in claims
        assert env["HF_HOME"].startswith(mounts[cache["name"]] + "/")


def test_cpu_workers_probe_the_ingress_liveness_and_readiness_routes():
    service = ray_service(committed("large"))
    cpu = next(c for g, _, c in containers(service) if g == "cpu")
    assert cpu["livenessProbe"]["httpGet"]["path"] == "/livez"
    assert cpu["readinessProbe"]["httpGet"]["path"] == "/readyz"
    from serve_app.routes.ops import router

    assert {"/livez", "/readyz"} <= {r.path for r in router.routes}


def test_cli_check_reports_a_stale_manifest(tmp_path, capsys):
    from serve_app.tools.cli import main

    stale = tmp_path / "large.yaml"
    stale.write_text("# old\n")
    assert main(["cluster-manifest", values_path("large"), "-o", str(stale), "--check"]) == 1
    assert main(["cluster-manifest", values_path("large"), "-o", str(stale)]) == 0
    assert main(["cluster-manifest", values_path("large"), "-o", str(stale), "--check"]) == 0
    assert "image: example.org/tts:1" in render_file(values_path("large"), image="example.org/tts:1")


def test_secret_variables_are_ones_the_settings_read():
    from serve_app.app.settings import ENVIRONMENT

    assert set(SECRET_ENV) <= set(ENVIRONMENT)
