"""The Tiltfile of the kind + Tilt loop, evaluated offline (tiltcheck.py: starlark-rust
against stubs of Tilt's built-ins): what it builds, deploys, in which order, which
ports it forwards and which buttons it offers; and that a mistake in it is caught.
And tilt/build.sh's choice of build (`--print`, fast): a cargo-zigbuild for the kind
node's CPU with a glibc no newer than the runtime image's, the node's architecture
found as documented. test_tilt_linux_build.py runs that build for real.
"""

import functools
import os
import platform
import re
import subprocess
from pathlib import Path

import pytest
import starlark as sl

from conftest import ROOT, helm_bin
from tiltcheck import TRIGGER_MODE_MANUAL, evaluate

DEV_DEPS = {"postgres", "redis", "elasticmq", "jaeger"}
SERVICES = {"order-api", "status-consumer", "delivery-service"}


@functools.cache
def tilt():
    return evaluate(ROOT, helm_bin())


def deps_of(name):
    """Every resource `name` waits for, transitively."""
    t = tilt()
    direct = (t.resources.get(name) or t.local[name])["resource_deps"]
    found = set(direct)
    for dep in direct:
        found |= deps_of(dep)
    return found


def workloads():
    return {(o["kind"], o["metadata"]["name"]) for o in tilt().yaml_objects}


def test_only_the_kind_cluster_and_local_helpers():
    t = tilt()
    assert t.contexts == ["kind-orderflow"]
    assert t.loads == ["./tilt/lib.star"]


def test_every_resource_names_a_workload_or_object_that_is_deployed():
    t = tilt()
    assert set(t.resources) == DEV_DEPS | SERVICES | {"controller", "pipeline"}
    for name, r in t.resources.items():
        if r["workload"]:
            kinds = {k for k, n in workloads() if n == r["workload"]}
            assert kinds & {"Deployment", "StatefulSet"}, f"{name}: no workload {r['workload']} is deployed"
    # The OrderPipeline as its own resource, selected by name:kind:namespace.
    [selector] = t.resources["pipeline"]["objects"]
    name, kind, namespace = selector.split(":")
    assert any(o["kind"].lower() == kind and o["metadata"]["name"] == name and o["metadata"]["namespace"] == namespace
               for o in t.yaml_objects), selector


def test_dev_dependencies_and_the_chart_with_its_crd_are_deployed():
    kinds = workloads()
    assert {("StatefulSet", "postgres"), ("Deployment", "redis"), ("Deployment", "elasticmq"), ("Deployment", "jaeger")} <= kinds
    assert ("CustomResourceDefinition", "orderpipelines.orderflow.dev") in kinds
    assert ("OrderPipeline", "orderflow") in kinds
    jaeger = next(o for o in tilt().yaml_objects if o["kind"] == "Deployment" and o["metadata"]["name"] == "jaeger")
    env = {e["name"]: e["value"] for e in jaeger["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["COLLECTOR_OTLP_ENABLED"] == "true"


def test_every_image_the_chart_runs_is_built_from_a_binary_the_compile_step_stages():
    t = tilt()
    chart_images = {
        c["image"].rsplit(":", 1)[0]
        for o in t.yaml_objects if o["kind"] == "Deployment" and o["metadata"]["name"].startswith("orderflow-")
        for c in o["spec"]["template"]["spec"]["containers"]
    }
    assert chart_images == set(t.images), "Tilt must build exactly the images the chart deploys"
    stage, command = build_sh("--print", env={"ORDERFLOW_TILT_ARCH": "amd64"}).stdout.splitlines()
    for ref, image in t.images.items():
        binary = ref.rsplit("/", 1)[1]
        assert image["context"] == stage.removeprefix("stage ") == "tilt/.build" and image["only"] == [binary], ref
        assert image["build_args"]["BIN"] == binary and image["dockerfile"].endswith("tilt/Dockerfile"), ref
        assert f"--bin {binary}" in command, f"tilt/build.sh does not build {binary}"
    compile_step = t.local["compile"]
    assert compile_step["cmd"] == "tilt/build.sh" and os.access(ROOT / "tilt/build.sh", os.X_OK)
    # A change to the build script or the zig pins rebuilds too; the staged output never triggers one.
    assert {"crates", "services", "Cargo.lock", "tilt/build.sh", "tilt/requirements.txt"} <= set(compile_step["deps"])
    assert "tilt/.build" in compile_step["ignore"]


# --- tilt/build.sh: Linux binaries for the kind node, whatever the host ------------
BUILD_SH = ROOT / "tilt" / "build.sh"
HOST_TRIPLE = {"x86_64": "x86_64-unknown-linux-gnu", "amd64": "x86_64-unknown-linux-gnu",
               "aarch64": "aarch64-unknown-linux-gnu", "arm64": "aarch64-unknown-linux-gnu"}


def build_sh(*args, env=None, fake_bin=None, check=True, timeout=60):
    """Runs tilt/build.sh with extra environment; `fake_bin` goes first on PATH."""
    full = {k: v for k, v in os.environ.items() if k != "ORDERFLOW_TILT_ARCH"} | (env or {})
    if fake_bin:
        full["PATH"] = f"{fake_bin}{os.pathsep}{full['PATH']}"
    proc = subprocess.run([str(BUILD_SH), *args], capture_output=True, text=True, env=full, timeout=timeout)
    if check:
        assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    return proc


def fake_tools(directory: Path, **scripts: str) -> Path:
    """Executables named after the keyword (kubectl, docker, rustup, cargo) running `body`."""
    directory.mkdir(exist_ok=True)
    for name, body in scripts.items():
        tool = directory / name
        tool.write_text(f"#!/bin/sh\n{body}\n")
        tool.chmod(0o755)
    return directory


def target_of(proc) -> str:
    command = proc.stdout.splitlines()[1].split()
    assert command[:3] == ["cargo", "zigbuild", "--target"], command
    return command[3]


@pytest.mark.parametrize("arch, triple", [("amd64", "x86_64-unknown-linux-gnu"), ("x86_64", "x86_64-unknown-linux-gnu"),
                                          ("arm64", "aarch64-unknown-linux-gnu"), ("aarch64", "aarch64-unknown-linux-gnu")])
def test_the_build_is_a_zigbuild_for_the_node_architecture_with_a_pinned_glibc(arch, triple):
    target = target_of(build_sh("--print", env={"ORDERFLOW_TILT_ARCH": arch}))
    assert re.fullmatch(re.escape(triple) + r"\.2\.\d+", target), target


def test_an_unknown_node_architecture_is_refused():
    proc = build_sh("--print", env={"ORDERFLOW_TILT_ARCH": "s390x"}, check=False)
    assert proc.returncode != 0 and "s390x" in proc.stderr and "ORDERFLOW_TILT_ARCH" in proc.stderr


def test_node_architecture_comes_from_the_kind_node_then_docker_then_the_host(tmp_path):
    # The fake kubectl answers only for the kind cluster's context.
    kind_node = 'case "$*" in *"--context kind-orderflow"*nodeInfo.architecture*) echo arm64;; *) exit 1;; esac'
    docker_engine = '[ "$1" = info ] && echo x86_64 || exit 1'
    down = "echo 'connection refused' >&2; exit 1"
    both = fake_tools(tmp_path / "both", kubectl=kind_node, docker=docker_engine)
    assert target_of(build_sh("--print", fake_bin=both)).startswith("aarch64-")
    assert target_of(build_sh("--print", fake_bin=both, env={"ORDERFLOW_TILT_ARCH": "amd64"})).startswith("x86_64-")
    no_cluster = fake_tools(tmp_path / "no-cluster", kubectl=down, docker='[ "$1" = info ] && echo aarch64 || exit 1')
    assert target_of(build_sh("--print", fake_bin=no_cluster)).startswith("aarch64-")
    nothing = fake_tools(tmp_path / "nothing", kubectl=down, docker="echo; exit 1")
    assert target_of(build_sh("--print", fake_bin=nothing)).startswith(HOST_TRIPLE[platform.machine()] + ".")


def test_a_missing_rust_target_stops_the_build_with_the_rustup_command(tmp_path):
    marker = tmp_path / "cargo-ran"
    tools = fake_tools(tmp_path / "bin", rustup='echo x86_64-unknown-linux-gnu', cargo=f"touch {marker}")
    proc = build_sh("delivery-service", fake_bin=tools, env={"ORDERFLOW_TILT_ARCH": "arm64"}, check=False)
    assert proc.returncode != 0
    assert "rustup target add aarch64-unknown-linux-gnu" in proc.stderr
    assert not marker.exists(), "cargo ran without the target's standard library"


def test_the_pinned_glibc_is_no_newer_than_the_runtime_images():
    from elfcheck import base_image_glibc, parse_glibc

    glibc = parse_glibc(target_of(build_sh("--print", env={"ORDERFLOW_TILT_ARCH": "amd64"})).split(".", 1)[1])
    dockerfile_base = re.search(r"^ARG BASE=(\S+)$", (ROOT / "tilt/Dockerfile").read_text(), re.M).group(1)
    for ref, image in tilt().images.items():
        assert image["build_args"]["BASE"] == dockerfile_base, f"{ref}: the Tiltfile and tilt/Dockerfile disagree on the base"
    assert glibc <= base_image_glibc(dockerfile_base), f"binaries need glibc {glibc}, {dockerfile_base} has less"


def test_dependencies_then_controller_and_pipeline_then_services():
    assert {"compile", "postgres", "elasticmq"} <= deps_of("controller")
    assert "controller" in deps_of("pipeline")
    for service in SERVICES:
        assert {"pipeline", "controller", "compile", "postgres", "elasticmq"} <= deps_of(service), service
    assert "redis" in deps_of("order-api")
    for dep in DEV_DEPS:
        assert not deps_of(dep) & ({"controller", "pipeline"} | SERVICES), f"{dep} must not wait for orderflow"


def test_port_forwards_api_jaeger_and_metrics():
    r = tilt().resources
    assert "8080:8080" in r["order-api"]["port_forwards"]
    assert "16686:16686" in r["jaeger"]["port_forwards"]
    assert "8081:8081" in r["delivery-service"]["port_forwards"]
    assert "8082:8082" in r["controller"]["port_forwards"]
    assert any(link["url"].endswith("/metrics") for link in r["order-api"]["links"])


def test_buttons_place_a_demo_order_and_run_the_cluster_e2e_tests():
    local = tilt().local
    demo, e2e = local["demo-order"], local["e2e-cluster"]
    for button in (demo, e2e):
        assert button["trigger_mode"] == TRIGGER_MODE_MANUAL and button["auto_init"] is False
        assert "demo-client" in button["resource_deps"]
    assert "orderflow" in (ROOT / demo["cmd"]).read_text() and "orders create" in (ROOT / demo["cmd"]).read_text()
    assert e2e["cmd"].endswith(" cargo test -p e2e --test e2e cluster")
    assert e2e["cmd"].startswith('CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/orderflow/target}" ')
    assert e2e["env"]["ORDERFLOW_URL"] == "http://localhost:8080"
    assert (ROOT / "tests/e2e/cluster.rs").exists()
    assert "clients create" in (ROOT / local["demo-client"]["cmd"]).read_text()


def test_a_misspelt_builtin_or_argument_fails_evaluation():
    source = (ROOT / "Tiltfile").read_text()
    with pytest.raises(sl.StarlarkError):
        evaluate(ROOT, helm_bin(), source.replace("k8s_resource(\n    workload(\"controller\")", "k8s_resorce(\n    workload(\"controller\")"))
    with pytest.raises((sl.StarlarkError, TypeError)):
        evaluate(ROOT, helm_bin(), source.replace("port_forwards = [\"8080:8080\"]", "port_forward = [\"8080:8080\"]"))


def test_runtime_image_passes_hadolint_and_runs_as_the_charts_user():
    import subprocess
    import sys
    from pathlib import Path

    import yaml

    dockerfile = ROOT / "tilt" / "Dockerfile"
    hadolint = Path(sys.executable).with_name("hadolint")
    proc = subprocess.run([str(hadolint), "--no-color", str(dockerfile)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    uid = yaml.safe_load((ROOT / "charts/orderflow/values.yaml").read_text())["securityContext"]["runAsUser"]
    assert f"USER {uid}:{uid}" in dockerfile.read_text()


def test_dev_values_lint_and_every_deployed_object_validates_strictly():
    import kubernetes_validate

    from conftest import CHART, helm

    out = helm("lint", "--strict", str(CHART), "--namespace", "orderflow", "-f", str(ROOT / "tilt/values-dev.yaml")).stdout
    assert "1 chart(s) linted, 0 chart(s) failed" in out
    custom = {"OrderPipeline", "ScaledObject", "TriggerAuthentication"}
    failures = []
    for obj in tilt().yaml_objects:
        if obj["kind"] in custom:
            continue
        try:
            kubernetes_validate.validate(obj, kubernetes_validate.utils.latest_version(), strict=True)
        except kubernetes_validate.ValidationError as err:
            failures.append(f"{obj['kind']}/{obj['metadata']['name']}: {'.'.join(map(str, err.path))}: {err.message}")
    assert not failures, "\n".join(failures)


def test_dev_orderpipeline_and_the_compose_pipeline_match_the_crd():
    import yaml

    from test_schemas import orderflow_crds

    index = orderflow_crds()
    pipelines = [o for o in tilt().yaml_objects if o["kind"] == "OrderPipeline"]
    pipelines += [d for d in yaml.safe_load_all((ROOT / "compose/pipeline.yaml").read_text()) if d and d["kind"] == "OrderPipeline"]
    assert len(pipelines) == 2
    for obj in pipelines:
        errors = index.errors(obj)
        assert not errors, f"OrderPipeline/{obj['metadata']['name']}:\n" + "\n".join(errors)
