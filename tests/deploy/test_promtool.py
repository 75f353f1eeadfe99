"""`promtool check rules` and `promtool test rules` on the rendered alerts."""

from __future__ import annotations

import shutil
import subprocess

import pytest
import yaml

from .tools import HERE, K8S, OVERLAYS, kustomize, split_alert, tool


@pytest.fixture(scope="module", params=OVERLAYS)
def rules_dir(request, tmp_path_factory):
    folder = tmp_path_factory.mktemp(f"rules-{request.param}")
    objects = kustomize(K8S / "overlays" / request.param)
    groups = [g for o in objects if o["kind"] == "PrometheusRule" for g in o["spec"]["groups"]]
    (folder / "rules.yaml").write_text(yaml.safe_dump({"groups": groups}))
    shutil.copy(HERE / "promtool" / "alerts_test.yaml", folder / "alerts_test.yaml")
    return folder, groups


def promtool(*args, cwd):
    result = subprocess.run([tool("promtool"), *args], cwd=cwd, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_check_rules(rules_dir):
    folder, groups = rules_dir
    out = promtool("check", "rules", "rules.yaml", cwd=folder)
    assert f"{sum(len(g['rules']) for g in groups)} rules found" in out


def test_alerts_have_the_tested_shape(rules_dir):
    _, groups = rules_dir
    alerts = {r["alert"]: r for g in groups for r in g["rules"]}
    assert set(alerts) >= {"ShoalHighLatencyP95", "ShoalQueueSustained", "ShoalModelLoadFailures",
                           "ShoalEvictionStorm"}
    for name, rule in alerts.items():
        signal, threshold = split_alert(rule["expr"])
        assert "or vector(0)" in signal and threshold >= 0, name
        assert rule["labels"]["severity"] in ("warning", "critical")
        assert rule["annotations"]["summary"]


def test_rule_unit_tests(rules_dir):
    folder, groups = rules_dir
    out = promtool("test", "rules", "alerts_test.yaml", cwd=folder)
    assert "SUCCESS" in out
    tested = yaml.safe_load((folder / "alerts_test.yaml").read_text())
    fired = {t["alertname"] for case in tested["tests"] for t in case["alert_rule_test"] if t["exp_alerts"]}
    assert fired == {r["alert"] for g in groups for r in g["rules"]}, "every alert has a firing test"
