"""Shared fixtures of the offline chart checks: where the chart and tools are, and
`render(values_file)` which runs `helm template` once per value set and returns the
parsed objects. Run through `make test-k8s` (scripts/test-k8s.sh sets HELM and the venv).
"""

import functools
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "orderflow"
RELEASE = "shop"
NAMESPACE = "orderflow"

# Every value set the chart must render: the defaults (None) and each file in ci/.
CI_VALUES = sorted((CHART / "ci").glob("*.yaml"))
VALUE_SETS = [None, *CI_VALUES]
VALUE_SET_IDS = ["defaults", *[p.stem for p in CI_VALUES]]
INVALID_VALUES = sorted((CHART / "ci-invalid").glob("*.yaml"))


def helm_bin() -> str:
    helm = os.environ.get("HELM") or shutil.which("helm")
    if not helm:
        pytest.exit("no helm: run through `make test-k8s` (scripts/k8s-tools.sh installs it)", returncode=2)
    return helm


def helm(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    """Runs helm offline on the chart; output is captured as text."""
    proc = subprocess.run([helm_bin(), *args], capture_output=True, text=True, cwd=ROOT)
    if check and proc.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr}{proc.stdout}")
    return proc


def values_args(values_file: Path | None, extra: tuple[str, ...] = ()) -> list[str]:
    args = ["-f", str(values_file)] if values_file else []
    for item in extra:
        args += ["--set", item]
    return args


@functools.cache
def render_text(values_file: Path | None, extra: tuple[str, ...] = ()) -> str:
    """`helm template` of the chart (hooks and tests included) for one value set."""
    return helm(
        "template", RELEASE, str(CHART), "--namespace", NAMESPACE, *values_args(values_file, extra)
    ).stdout


def render(values_file: Path | None, extra: tuple[str, ...] = ()) -> list[dict]:
    """The rendered objects of one value set (empty documents dropped)."""
    return [doc for doc in yaml.safe_load_all(render_text(values_file, extra)) if doc]


def by_kind(objects: list[dict], kind: str) -> list[dict]:
    return [o for o in objects if o["kind"] == kind]


def one(objects: list[dict], kind: str, name: str) -> dict:
    found = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind} {name}, found {len(found)}"
    return found[0]


def pod_specs(objects: list[dict]) -> list[tuple[str, dict]]:
    """(object name, pod spec) of every Deployment and bare Pod."""
    specs = []
    for o in objects:
        if o["kind"] == "Deployment":
            specs.append((f"Deployment/{o['metadata']['name']}", o["spec"]["template"]["spec"]))
        elif o["kind"] == "Pod":
            specs.append((f"Pod/{o['metadata']['name']}", o["spec"]))
    return specs


def load_values(values_file: Path | None) -> dict:
    """The default values merged with a value file (maps merged, everything else replaced),
    as helm does, so assertions can compare output with the values that produced it."""
    base = yaml.safe_load((CHART / "values.yaml").read_text())
    if values_file:
        _merge(base, yaml.safe_load(values_file.read_text()) or {})
    return base


def _merge(into: dict, over: dict) -> None:
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = value


@pytest.fixture(params=VALUE_SETS, ids=VALUE_SET_IDS)
def value_set(request) -> Path | None:
    return request.param
