"""The PrometheusRule (cluster/prometheus-rules.yaml): valid for Prometheus (`promtool check
rules`), each alert firing on the synthetic series it is written for and quiet on the others
(`promtool test rules`, cases in prometheus-rules.test.yaml), over metric names that are
exported, and with a runbook entry in docs/deploy.md."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from deployments.metrics import EXPORTED_NAMES

REPO = Path(__file__).resolve().parents[2]
RULE = yaml.safe_load((REPO / "cluster" / "prometheus-rules.yaml").read_text())
CASES = Path(__file__).with_name("prometheus-rules.test.yaml")
ALERTS = [r for g in RULE["spec"]["groups"] for r in g["rules"] if "alert" in r]
#: Ray Serve's own series the rules read (exported by the controller and replicas).
SERVE_SERIES = {"ray_serve_deployment_replica_healthy", "ray_serve_deployment_status",
                "ray_serve_deployment_replica_starts_total"}


@pytest.fixture(scope="module")
def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        message = "promtool is not installed (bash scripts/install_promtool.sh)"
        if os.environ.get("QTTS_REQUIRE_BACKENDS") == "1":  # CI installs it: never skip there
            pytest.fail(message)
        pytest.skip(message)
    return found


@pytest.fixture()
def rule_dir(tmp_path: Path) -> Path:
    """The PrometheusRule's groups as a plain rule file, with the test cases beside it."""
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump({"groups": RULE["spec"]["groups"]}))
    shutil.copy(CASES, tmp_path / CASES.name)
    return tmp_path


def test_promtool_accepts_the_rules(promtool, rule_dir):
    result = subprocess.run([promtool, "check", "rules", "rules.yaml"], cwd=rule_dir,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{len(ALERTS)} rules found" in result.stdout


def test_every_alert_fires_on_its_synthetic_series(promtool, rule_dir):
    result = subprocess.run([promtool, "test", "rules", CASES.name], cwd=rule_dir,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    cases = yaml.safe_load(CASES.read_text())["tests"]
    firing = {t["alertname"] for case in cases for t in case["alert_rule_test"] if t["exp_alerts"]}
    assert firing == {a["alert"] for a in ALERTS}, "an alert without a case that fires it"


def test_the_rules_read_only_series_that_are_exported():
    exported = {s for series in EXPORTED_NAMES.values() for s in series} | SERVE_SERIES
    for alert in ALERTS:
        used = set(re.findall(r"\bray_[a-z_]+", alert["expr"]))
        assert used and used <= exported, (alert["alert"], used - exported)


def test_every_alert_has_a_runbook_entry_and_a_severity():
    runbook = (REPO / "docs" / "deploy.md").read_text()
    for alert in ALERTS:
        name = alert["alert"]
        assert alert["labels"]["severity"] in {"critical", "warning", "info"}, name
        assert alert["annotations"]["runbook_url"].endswith(f"docs/deploy.md#{name.lower()}")
        assert re.search(rf"^#### {name}$", runbook, re.M), f"no runbook entry for {name}"


def test_the_rule_is_picked_up_with_the_pod_monitor():
    monitor = yaml.safe_load((REPO / "cluster" / "podmonitor.yaml").read_text())
    assert RULE["metadata"]["namespace"] == monitor["metadata"]["namespace"]
    assert RULE["metadata"]["labels"]["release"] == monitor["metadata"]["labels"]["release"]
