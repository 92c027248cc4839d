"""The Tiltfile of the kind + Tilt loop, evaluated offline (tiltcheck.py: starlark-rust
against stubs of Tilt's built-ins): what it builds, deploys, in which order, which
ports it forwards and which buttons it offers; and that a mistake in it is caught.
"""

import functools
import os

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


def test_every_image_the_chart_runs_is_built_from_a_host_compiled_binary():
    t = tilt()
    chart_images = {
        c["image"].rsplit(":", 1)[0]
        for o in t.yaml_objects if o["kind"] == "Deployment" and o["metadata"]["name"].startswith("orderflow-")
        for c in o["spec"]["template"]["spec"]["containers"]
    }
    assert chart_images == set(t.images), "Tilt must build exactly the images the chart deploys"
    for ref, image in t.images.items():
        binary = ref.rsplit("/", 1)[1]
        assert image["context"] == "tilt/.build" and image["only"] == [binary], ref
        assert image["build_args"]["BIN"] == binary and image["dockerfile"].endswith("tilt/Dockerfile"), ref
    compile_step = t.local["compile"]
    assert compile_step["cmd"] == "tilt/build.sh" and os.access(ROOT / "tilt/build.sh", os.X_OK)
    assert {"crates", "services", "Cargo.lock"} <= set(compile_step["deps"])
    build = (ROOT / "tilt/build.sh").read_text()
    for binary in [ref.rsplit("/", 1)[1] for ref in t.images] + ["orderflow"]:
        assert binary in build, f"tilt/build.sh does not build {binary}"


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
    assert e2e["cmd"] == "cargo test -p e2e --test e2e cluster"
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
