"""The GitHub Actions workflows (.github/workflows), checked offline: actionlint
(syntax, expressions, runner labels, each action's inputs, shellcheck on every `run:`)
and zizmor (security audits, pedantic persona, no GitHub API) report nothing; every
action is pinned to a full commit SHA with its version beside it; and the release
workflow publishes what the Dockerfile, the chart and the README promise: one
multi-arch image per binary, tagged with the chart's appVersion, then the chart as an
OCI artifact, with the tag checked against the chart (.github/scripts/release-version.sh).
Each checker is also fed a known-bad workflow, to show that it can fail.
"""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import CHART, ROOT

BIN_DIR = Path(sys.executable).parent
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))
RELEASE = ROOT / ".github" / "workflows" / "release.yml"
VERSION_SCRIPT = ROOT / ".github" / "scripts" / "release-version.sh"
# `uses: owner/repo@<40 hex> # vX.Y.Z`
PINNED = re.compile(r"^\s*-?\s*uses:\s*([\w.-]+/[\w.-]+)@([0-9a-f]{40}) # (v\d+)(\.\d+\.\d+)\s*$")

BAD_WORKFLOW = """\
name: bad
on: pull_request_target
jobs:
  greet:
    runs-on: ubuntu-18.04-arm
    steps:
      - uses: actions/checkout@v4
      - run: echo "${{ github.event.pull_request.title }}" && cat $HOME/notes
"""


def actionlint(*paths: Path) -> subprocess.CompletedProcess:
    """actionlint with the venv's shellcheck, findings as JSON."""
    return subprocess.run(
        [str(BIN_DIR / "actionlint"), "-shellcheck", str(BIN_DIR / "shellcheck"), "-format", "{{json .}}",
         *map(str, paths)],
        capture_output=True, text=True)


def zizmor(path: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.endswith("TOKEN")}
    return subprocess.run(
        [str(BIN_DIR / "zizmor"), "--offline", "--persona=pedantic", "--strict-collection", "--format=json",
         "--quiet", str(path)],
        capture_output=True, text=True, env=env)


def findings(proc: subprocess.CompletedProcess) -> list[dict]:
    return json.loads(proc.stdout or "[]")


def as_tagged(text: str) -> str:
    """`uses: x@<sha> # v1.2.3` -> `uses: x@v1`: actionlint knows the inputs and runtime
    of popular actions by their major tag, never by commit."""
    return "\n".join(PINNED.sub(lambda m: m.group(0).split("@")[0] + f"@{m.group(3)}", line)
                     for line in text.splitlines()) + "\n"


def release() -> dict:
    return yaml.safe_load(RELEASE.read_text())


def dockerfile_binaries() -> list[str]:
    return re.findall(r"^#\s+docker build --build-arg BIN=(\S+)", (ROOT / "Dockerfile").read_text(), re.M)


def test_there_are_workflows():
    assert RELEASE in WORKFLOWS


def test_actionlint_and_shellcheck_find_nothing():
    proc = actionlint(*WORKFLOWS)
    assert proc.returncode == 0 and findings(proc) == [], proc.stdout + proc.stderr


def test_actionlint_checks_each_actions_inputs_and_runtime_at_its_version(tmp_path):
    for workflow in WORKFLOWS:
        tagged = tmp_path / workflow.name
        tagged.write_text(as_tagged(workflow.read_text()))
        assert "@v" in tagged.read_text()
        proc = actionlint(tagged)
        assert proc.returncode == 0 and findings(proc) == [], proc.stdout + proc.stderr


def test_actionlint_fails_on_a_bad_workflow(tmp_path):
    bad = tmp_path / "bad.yml"
    bad.write_text(BAD_WORKFLOW + "      - uses: docker/build-push-action@v7\n        with: {buildargs: BIN=x}\n")
    proc = actionlint(bad)
    kinds = {f["kind"] for f in findings(proc)}
    assert proc.returncode == 1
    # untrusted input in a script, an unknown runner, shellcheck's SC2086, an unknown input
    assert {"expression", "runner-label", "shellcheck", "action"} <= kinds, kinds


def test_zizmor_finds_nothing():
    proc = zizmor(ROOT / ".github")
    assert proc.returncode == 0 and findings(proc) == [], proc.stdout + proc.stderr


def test_zizmor_fails_on_a_bad_workflow(tmp_path):
    (tmp_path / ".github" / "workflows").mkdir(parents=True)
    (tmp_path / ".github" / "workflows" / "bad.yml").write_text(BAD_WORKFLOW)
    proc = zizmor(tmp_path / ".github")
    audits = {f["ident"] for f in findings(proc)}
    assert proc.returncode != 0
    assert {"template-injection", "unpinned-uses", "artipacked", "excessive-permissions",
            "dangerous-triggers"} <= audits, audits


def test_every_action_is_pinned_to_a_commit_with_its_version():
    seen: dict[str, tuple[str, str]] = {}
    for workflow in WORKFLOWS:
        for line in workflow.read_text().splitlines():
            if re.match(r"^\s*-?\s*uses:", line):
                match = PINNED.match(line)
                assert match, f"{workflow.name}: not pinned to a full SHA with '# vX.Y.Z': {line.strip()}"
                action, sha, major, rest = match.groups()
                assert seen.setdefault(action, (sha, major + rest)) == (sha, major + rest), \
                    f"{action} is pinned to two versions"
    assert "docker/build-push-action" in seen


def test_workflows_grant_no_permission_by_default_and_keep_no_credentials():
    for workflow in WORKFLOWS:
        doc = yaml.safe_load(workflow.read_text())
        assert doc["permissions"] == {}, f"{workflow.name}: top-level permissions must be {{}}"
        for name, job in doc["jobs"].items():
            granted = job.get("permissions", {})
            assert set(granted.values()) <= {"read", "write"}
            assert {k for k, v in granted.items() if v == "write"} <= {"packages"}, f"{name}: {granted}"
            for step in job["steps"]:
                if step.get("uses", "").startswith("actions/checkout@"):
                    assert step["with"]["persist-credentials"] is False, name


def test_release_runs_on_version_tags_only():
    on = release()[True]  # PyYAML reads the key `on` as True
    assert on == {"push": {"tags": ["v*"]}}


def test_release_builds_every_dockerfile_binary_natively_for_amd64_and_arm64():
    jobs = release()["jobs"]
    binaries = dockerfile_binaries()
    assert binaries == ["order-service", "delivery-service", "orderflow-controller", "orderflow"]
    matrix = jobs["image"]["strategy"]["matrix"]
    assert matrix["bin"] == binaries and jobs["manifest"]["strategy"]["matrix"]["bin"] == binaries
    assert {p["arch"]: p["runner"] for p in matrix["platform"]} == {"amd64": "ubuntu-24.04", "arm64": "ubuntu-24.04-arm"}
    uses = [s.get("uses", "") for job in jobs.values() for s in job["steps"]]
    assert not any("setup-qemu" in u for u in uses), "native runners, no emulation"
    build = next(s for s in jobs["image"]["steps"] if s.get("id") == "build")["with"]
    assert build["build-args"] == "BIN=${{ matrix.bin }}"
    assert build["platforms"] == "linux/${{ matrix.platform.arch }}"
    assert "push-by-digest=true" in build["outputs"] and "cache-from" not in build


def test_release_tags_images_as_the_dockerfile_documents_and_the_chart_pulls():
    doc = release()
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert doc["env"]["REGISTRY"] == values["image"]["registry"] == "ghcr.io/orderflow"
    # The Dockerfile's header tags ghcr.io/orderflow/<binary>:<appVersion>.
    documented = re.findall(r"-t (\S+)/(\S+):(\S+) \.", (ROOT / "Dockerfile").read_text())
    assert documented and all(reg == doc["env"]["REGISTRY"] and tag == chart["appVersion"] for reg, _, tag in documented)
    merge = doc["jobs"]["manifest"]["steps"][-1]
    assert merge["env"]["VERSION"] == "${{ needs.version.outputs.version }}"
    assert 'docker buildx imagetools create --tag "$image:$VERSION"' in merge["run"]
    assert '"linux/amd64", "linux/arm64"' in merge["run"]


def test_release_pushes_the_chart_after_its_images_as_an_oci_artifact():
    job = release()["jobs"]["chart"]
    assert set(job["needs"]) == {"version", "manifest"}
    setup = next(s for s in job["steps"] if s.get("uses", "").startswith("azure/setup-helm@"))
    assert setup["with"]["version"] == "v3.18.0"  # the helm of scripts/k8s-tools.sh
    run = job["steps"][-1]["run"]
    assert 'helm push "$RUNNER_TEMP/chart/orderflow-$VERSION.tgz" oci://ghcr.io/orderflow/charts' in run
    assert "--password-stdin" in run


def run_version_script(tag: str, root: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(VERSION_SCRIPT), tag, *([str(root)] if root else [])],
                          capture_output=True, text=True)


def test_the_release_tag_must_match_the_chart():
    version = yaml.safe_load((CHART / "Chart.yaml").read_text())["version"]
    proc = run_version_script(f"v{version}")
    assert proc.returncode == 0 and proc.stdout == f"version={version}\n", proc.stderr
    for tag in (f"v{version}.1", version, "v9.9.9", f"v{version}junk"):
        proc = run_version_script(tag)
        assert proc.returncode == 1 and proc.stdout == "" and "release-version:" in proc.stderr, tag


@pytest.mark.parametrize("edit", ["appVersion", "crate"])
def test_the_release_tag_must_match_the_app_version_and_the_crates(edit, tmp_path):
    chart_yaml = tmp_path / "charts" / "orderflow" / "Chart.yaml"
    chart_yaml.parent.mkdir(parents=True)
    shutil.copyfile(CHART / "Chart.yaml", chart_yaml)
    script = VERSION_SCRIPT.read_text()
    crates = re.search(r"^crates=\((.*)\)$", script, re.M).group(1).split()
    for crate in crates:
        (tmp_path / crate).mkdir(parents=True)
        shutil.copyfile(ROOT / crate / "Cargo.toml", tmp_path / crate / "Cargo.toml")
    version = yaml.safe_load(chart_yaml.read_text())["version"]
    assert run_version_script(f"v{version}", tmp_path).returncode == 0
    if edit == "appVersion":
        chart_yaml.write_text(re.sub(r"^appVersion: .*$", 'appVersion: "0.0.1"', chart_yaml.read_text(), flags=re.M))
    else:
        cargo = tmp_path / crates[-1] / "Cargo.toml"
        cargo.write_text(cargo.read_text().replace(f'version = "{version}"', 'version = "0.0.1"', 1))
    proc = run_version_script(f"v{version}", tmp_path)
    assert proc.returncode == 1 and "'0.0.1'" in proc.stderr, proc.stderr


def test_the_version_script_checks_the_crate_of_every_dockerfile_binary():
    crates = re.search(r"^crates=\((.*)\)$", VERSION_SCRIPT.read_text(), re.M).group(1).split()
    names = set()
    for crate in crates:
        cargo = (ROOT / crate / "Cargo.toml").read_text()
        names |= set(re.findall(r'^name = "([^"]+)"', cargo, re.M))
    assert set(dockerfile_binaries()) <= names


def test_the_release_scripts_pass_shellcheck():
    scripts = sorted((ROOT / ".github" / "scripts").glob("*.sh"))
    proc = subprocess.run([str(BIN_DIR / "shellcheck"), *map(str, scripts)], capture_output=True, text=True)
    assert scripts and proc.returncode == 0, proc.stdout
