"""The chart's alerting rules as Prometheus loads them, and promtool to check them.

`rules_file(objects, directory)` writes the groups of the rendered PrometheusRule as a
Prometheus rule file (what prometheus-operator hands Prometheus: `groups:` and nothing
else); `promtool(...)` runs Prometheus's own checker on it: `check rules` parses every
expression and template, `test rules` evaluates the rules over synthetic series
(https://prometheus.io/docs/prometheus/latest/configuration/unit_testing_rules/).
promtool comes from scripts/k8s-tools.sh (PROMTOOL), which never starts a Prometheus.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ALERT_TESTS = Path(__file__).parent / "alerts"


def promtool_bin() -> str:
    found = os.environ.get("PROMTOOL") or shutil.which("promtool")
    if not found:
        pytest.fail("no promtool: run through `make test-k8s` (scripts/k8s-tools.sh provides it)")
    return found


def promtool(*args: str | Path) -> subprocess.CompletedProcess:
    return subprocess.run([promtool_bin(), *map(str, args)], capture_output=True, text=True)


def rule_groups(objects: list[dict]) -> list[dict]:
    [rule] = [o for o in objects if o["kind"] == "PrometheusRule"]
    return rule["spec"]["groups"]


def rules_file(objects: list[dict], directory: Path) -> Path:
    path = directory / "rules.yaml"
    path.write_text(yaml.safe_dump({"groups": rule_groups(objects)}, sort_keys=False))
    return path


def unit_test_file(name: str, directory: Path) -> Path:
    """A copy of alerts/<name> beside rules.yaml, which its `rule_files` names."""
    source = yaml.safe_load((ALERT_TESTS / name).read_text())
    assert source["rule_files"] == ["rules.yaml"], f"{name} must test rules.yaml (the rendered chart)"
    path = directory / name
    shutil.copyfile(ALERT_TESTS / name, path)
    return path


def alert_cases(name: str) -> dict[str, dict[str, int]]:
    """alertname -> {"fires": n, "quiet": n}: how many evaluations of alerts/<name>
    expect it firing and how many expect it silent."""
    cases: dict[str, dict[str, int]] = {}
    for test in yaml.safe_load((ALERT_TESTS / name).read_text())["tests"]:
        for check in test.get("alert_rule_test", []):
            counts = cases.setdefault(check["alertname"], {"fires": 0, "quiet": 0})
            counts["fires" if check.get("exp_alerts") else "quiet"] += 1
    return cases
