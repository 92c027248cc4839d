"""The Dockerfile passes hadolint (no Docker engine runs here to build it) and keeps
the properties the chart relies on: a dependency-only layer (cargo-chef), a
distroless final stage, a numeric non-root user, the binary chosen by BIN. Its
.dockerignore, applied with Docker's matching rules (dockerignore.py), keeps out
what the Tilt loop and cargo write into the clone and keeps what the build needs."""

import re
import subprocess
import sys
from pathlib import Path

from conftest import ROOT
from dockerignore import DockerIgnore

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


def test_dockerignore_matching_follows_dockers_rules():
    # The examples of https://docs.docker.com/build/concepts/context/#dockerignore-files
    rules = DockerIgnore("# comment\n*/temp*\n*/*/temp*\ntemp?\n")
    assert rules.excludes("somedir/temporary.txt") and rules.excludes("somedir/temp")
    assert rules.excludes("somedir/subdir/temporary.txt") and rules.excludes("tempa")
    assert not rules.excludes("temp") and not rules.excludes("a/b/c/temp.txt") and not rules.excludes("comment")
    assert DockerIgnore("**/*.go").excludes("main.go") and DockerIgnore("**/*.go").excludes("a/b/main.go")
    readme = DockerIgnore("*.md\n!README.md\n")
    assert readme.excludes("CHANGES.md") and not readme.excludes("README.md")
    # A matched directory takes everything under it; a leading / means the context root.
    assert DockerIgnore("/tilt/.build\n").excludes("tilt/.build/order-service")
    assert not DockerIgnore("target\n").excludes("services/target/x"), "a plain name matches at the root only"


def tilt_build_outputs() -> set[str]:
    """What the Tilt loop writes into the clone: the build contexts Tilt packages (the
    compile step's staging dir) and the compile step's ignore list (the paths Tilt
    must not watch because the build writes them), each at the context root."""
    from test_tilt import build_sh, tilt

    t = tilt()
    outputs = {image["context"] for image in t.images.values()}
    outputs |= {p.removeprefix("**/") for r in t.local.values() for p in r.get("ignore", [])}
    stage = build_sh("--print").stdout.splitlines()[0].removeprefix("stage ")
    return outputs | {stage}


def test_dockerignore_keeps_build_output_and_secrets_out():
    rules = DockerIgnore.of(ROOT)
    outputs = tilt_build_outputs()
    assert "tilt/.build" in outputs and "target" in outputs
    for path in sorted(outputs | {"target", ".git", ".tools", "node_modules"}):
        assert rules.excludes(f"{path}/probe"), f"{path}/ would be sent with every docker build"
    assert rules.excludes(".env") and rules.excludes("services/order-service/debug.log")


def test_dockerignore_keeps_what_the_release_build_needs():
    rules = DockerIgnore.of(ROOT)
    # Every workspace member, or the build cannot resolve the workspace; the offline
    # query data and the migrations the binaries embed.
    members = re.findall(r'"([^"]+)"', (ROOT / "Cargo.toml").read_text().split("members")[1].split("]")[0])
    needed = ["Cargo.toml", "Cargo.lock", "rust-toolchain.toml", ".sqlx/probe.json", "migrations/orders/probe.sql"]
    for path in needed + [f"{m}/Cargo.toml" for m in members] + [f"{m}/src/lib.rs" for m in members]:
        assert not rules.excludes(path), f".dockerignore drops {path}, which the release build needs"
