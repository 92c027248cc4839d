"""The Dockerfile passes hadolint (no Docker engine runs here to build it) and keeps
the properties the chart relies on: a dependency-only layer (cargo-chef), a
distroless final stage, a numeric non-root user, the binary chosen by BIN."""

import re
import subprocess
import sys
from pathlib import Path

from conftest import ROOT

HADOLINT = Path(sys.executable).with_name("hadolint")
DOCKERFILE = ROOT / "Dockerfile"


def test_hadolint_passes():
    proc = subprocess.run([str(HADOLINT), "--no-color", str(DOCKERFILE)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_hadolint_is_not_vacuous(tmp_path):
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM debian:latest\nRUN apt-get install curl\n")
    proc = subprocess.run([str(HADOLINT), "--no-color", str(bad)], capture_output=True, text=True)
    assert proc.returncode != 0 and "DL3007" in proc.stdout


def stages():
    """[(base image, stage name, instructions)] of the Dockerfile."""
    result = []
    for line in DOCKERFILE.read_text().splitlines():
        match = re.match(r"FROM\s+(\S+)(?:\s+AS\s+(\S+))?", line, re.IGNORECASE)
        if match:
            result.append((match.group(1), match.group(2), []))
        elif result and line and not line.startswith("#"):
            result[-1][2].append(line)
    return result


def test_dependencies_are_cooked_before_the_sources_are_copied():
    builder = next(body for _, name, body in stages() if name == "builder")
    cook = next(i for i, line in enumerate(builder) if "cargo chef cook" in line)
    copy_all = next(i for i, line in enumerate(builder) if line.startswith("COPY . ."))
    assert cook < copy_all


def test_final_image_is_distroless_and_runs_as_a_numeric_non_root_user():
    base, _, body = stages()[-1]
    assert base.startswith("gcr.io/distroless/")
    [user] = [line.split()[1] for line in body if line.startswith("USER ")]
    uid, gid = user.split(":")
    assert uid.isdigit() and gid.isdigit() and int(uid) >= 10000
    assert any(line.startswith("ENTRYPOINT") for line in body)
    # The chart's securityContext assumes this very user.
    values = (ROOT / "charts" / "orderflow" / "values.yaml").read_text()
    assert f"runAsUser: {uid}" in values and f"runAsGroup: {gid}" in values


def test_dockerignore_keeps_build_output_and_secrets_out():
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {"target", ".git", ".env"} <= set(ignored)
    # Every workspace member must stay in the context, or the build cannot resolve the workspace.
    members = re.findall(r'"([^"]+)"', (ROOT / "Cargo.toml").read_text().split("members")[1].split("]")[0])
    for member in members:
        assert member.split("/")[0] not in ignored, f"{member} is a workspace member but .dockerignore drops it"
