"""What can be checked of the image recipe, the dashboard and the scrape config without a
Docker engine, Grafana or Prometheus."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path

import yaml

from deployments.metrics import EXPORTED_NAMES

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "cluster" / "Dockerfile"
DASHBOARD = REPO / "cluster" / "grafana-dashboard.json"


def _instructions(text: str) -> list[tuple[str, str]]:
    joined = re.sub(r"\\\n", " ", text)
    lines = [ln.strip() for ln in joined.splitlines() if ln.strip() and not ln.startswith("#")]
    return [(ln.split(None, 1)[0].upper(), ln.split(None, 1)[1]) for ln in lines]


def test_every_file_the_image_copies_from_the_repo_exists():
    copies = [args for op, args in _instructions(DOCKERFILE.read_text()) if op == "COPY"]
    sources = []
    for args in copies:
        words = [w for w in args.split() if not w.startswith("--")]
        if "--from=" in args:
            continue  # from an earlier stage, not the repo
        sources += words[:-1]
    assert sources, "the image copies nothing from the repo"
    for source in sources:
        assert (REPO / source).exists(), f"Dockerfile copies {source}, which does not exist"


def test_the_image_pins_torch_2_11_on_a_cuda_base_and_runs_an_existing_command():
    steps = _instructions(DOCKERFILE.read_text())
    text = DOCKERFILE.read_text()
    assert all("nvidia/cuda:" in args for op, args in steps if op == "FROM")
    assert "torch==2.11.0" in text and "torchaudio==2.11.0" in text
    assert "flash-attn" in text  # optional, behind a build argument
    cmd = json.loads(next(args for op, args in steps if op == "CMD"))
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert cmd[0] in scripts
    from serve_app.tools.cli import (
        main,  # the console script's target exists and parses the command
    )

    assert scripts[cmd[0]] == "serve_app.tools.cli:main" and callable(main)


def _dashboard_series() -> set[str]:
    exprs = []
    for panel in json.loads(DASHBOARD.read_text())["panels"]:
        exprs += [t["expr"] for t in panel["targets"]]
    for var in json.loads(DASHBOARD.read_text())["templating"]["list"]:
        exprs.append(var.get("query", ""))
    return {m for e in exprs for m in re.findall(r"\bray_qtts_[a-z_]+", e)}


def test_the_dashboard_uses_exactly_the_exported_metric_names():
    used = _dashboard_series()
    exported = {s for series in EXPORTED_NAMES.values() for s in series}
    assert used <= exported, f"dashboard names no metric is exported as: {used - exported}"
    for name, series in EXPORTED_NAMES.items():
        assert used & set(series), f"{name} has no panel"


def test_the_pod_monitor_scrapes_the_metrics_port_of_the_rayservice_pods():
    monitor = yaml.safe_load((REPO / "cluster" / "podmonitor.yaml").read_text())
    docs = list(yaml.safe_load_all((REPO / "cluster" / "generated" / "large.yaml").read_text()))
    service = next(d for d in docs if d["kind"] == "RayService")
    cluster = service["spec"]["rayClusterConfig"]
    templates = [cluster["headGroupSpec"]["template"]] + \
        [g["template"] for g in cluster["workerGroupSpecs"]]
    selector = monitor["spec"]["selector"]["matchLabels"]
    port = monitor["spec"]["podMetricsEndpoints"][0]["port"]
    for template in templates:
        assert selector.items() <= template["metadata"]["labels"].items()
        ports = {p["name"]: p["containerPort"] for c in template["spec"]["containers"]
                 for p in c["ports"]}
        assert ports[port] == 8080
