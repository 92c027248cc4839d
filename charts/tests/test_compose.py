"""docker-compose.yml, the local stack without Kubernetes: valid against the compose
specification (check-jsonschema's vendored schema), and shaped as the README promises:
health checks on the dependencies, start order by depends_on conditions, the
controller's reconcile-once as the one-shot `setup` on compose/pipeline.yaml, two
delivery-service replicas, images built from the Dockerfile, ports on 127.0.0.1 only,
and ElasticMQ's queues named as the controller names them.
"""

import re
import subprocess
import sys
from pathlib import Path

import yaml

from conftest import ROOT

COMPOSE = ROOT / "docker-compose.yml"
CHECK_JSONSCHEMA = Path(sys.executable).with_name("check-jsonschema")


def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def test_valid_against_the_compose_specification():
    proc = subprocess.run(
        [str(CHECK_JSONSCHEMA), "--builtin-schema", "vendor.compose-spec", str(COMPOSE)],
        capture_output=True, text=True,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_the_spec_check_refuses_an_unknown_key(tmp_path):
    bad = compose()
    bad["services"]["redis"]["portz"] = ["6379:6379"]
    path = tmp_path / "bad.yml"
    path.write_text(yaml.safe_dump(bad))
    proc = subprocess.run(
        [str(CHECK_JSONSCHEMA), "--builtin-schema", "vendor.compose-spec", str(path)], capture_output=True, text=True
    )
    assert proc.returncode != 0 and "portz" in proc.stdout + proc.stderr


def test_dependencies_have_health_checks_and_services_wait_for_them():
    services = compose()["services"]
    for name in ("postgres", "redis", "elasticmq"):
        assert services[name]["healthcheck"]["test"], name
    assert services["postgres"]["image"] == "postgres:15" and services["redis"]["image"] == "redis:7"
    assert services["elasticmq"]["image"].startswith("softwaremill/elasticmq-native:")
    assert services["setup"]["depends_on"] == {
        "postgres": {"condition": "service_healthy"},
        "elasticmq": {"condition": "service_healthy"},
    }
    for name in ("order-service", "delivery-service", "demo-client"):
        assert services[name]["depends_on"]["setup"] == {"condition": "service_completed_successfully"}, name
    assert services["order-service"]["depends_on"]["redis"] == {"condition": "service_healthy"}
    assert services["order-service"]["depends_on"]["keys"] == {"condition": "service_completed_successfully"}


def test_setup_is_the_controllers_reconcile_once_on_the_compose_pipeline():
    setup = compose()["services"]["setup"]
    assert setup["build"]["args"]["BIN"] == "orderflow-controller"
    assert setup["command"][:3] == ["reconcile-once", "--file", "/compose/pipeline.yaml"]
    assert "./compose:/compose:ro" in setup["volumes"]
    docs = list(yaml.safe_load_all((ROOT / "compose" / "pipeline.yaml").read_text()))
    pipeline = next(d for d in docs if d["kind"] == "OrderPipeline")
    # The same shape as k8s/examples/local.yaml, pointed at the Compose network.
    local = next(d for d in yaml.safe_load_all((ROOT / "k8s" / "examples" / "local.yaml").read_text()) if d["kind"] == "OrderPipeline")
    assert pipeline["apiVersion"] == local["apiVersion"] and set(pipeline["spec"]) <= set(local["spec"])
    assert pipeline["spec"]["sqs"]["endpoint"] == "http://elasticmq:9324"
    assert pipeline["spec"]["databases"]["server"]["host"] == "postgres"
    secret = pipeline["spec"]["databases"]["server"]["adminSecretRef"]["name"]
    assert any(d["kind"] == "Secret" and d["metadata"]["name"] == secret for d in docs)


def test_both_services_are_built_from_the_dockerfile_with_two_delivery_replicas():
    services = compose()["services"]
    for name, binary in (("order-service", "order-service"), ("delivery-service", "delivery-service")):
        assert services[name]["build"] == {"context": ".", "args": {"BIN": binary}}, name
        env = services[name]["environment"]
        assert env["DATABASE_MIGRATE"] == "false", "the controller migrates"
        assert env["SQS_ENDPOINT_URL"] == "http://elasticmq:9324"
        assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://jaeger:4318"
    assert services["delivery-service"]["deploy"]["replicas"] == 2
    assert "ports" not in services["delivery-service"], "two replicas cannot share a host port"
    assert services["jaeger"]["environment"]["COLLECTOR_OTLP_ENABLED"] == "true"
    assert services["order-service"]["environment"]["JWT_PRIVATE_KEY_FILE"] == "/keys/jwt.pem"


def test_published_ports_are_on_loopback_only():
    for name, service in compose()["services"].items():
        for port in service.get("ports", []):
            assert isinstance(port, str) and port.startswith("127.0.0.1:"), f"{name} publishes {port!r} beyond loopback"
    ports = compose()["services"]["order-service"]["ports"]
    assert ports == ["127.0.0.1:8080:8080"]


def test_elasticmq_declares_both_fifo_queues_and_their_dlqs_as_the_controller_names_them():
    conf = (ROOT / "k8s" / "dev" / "elasticmq.conf").read_text()
    queues = re.findall(r'^  "([^"]+)" \{', conf, re.M)
    assert queues == ["orders-queue.fifo", "orders-queue-dlq.fifo", "delivery-status-queue.fifo", "delivery-status-queue-dlq.fifo"]
    for main in ("orders-queue.fifo", "delivery-status-queue.fifo"):
        dlq = main.removesuffix(".fifo") + "-dlq.fifo"
        block = conf.split(f'"{main}" {{', 1)[1].split('\n  }', 1)[0]
        assert "fifo = true" in block and f'name = "{dlq}"' in block and "maxReceiveCount = 5" in block, main
