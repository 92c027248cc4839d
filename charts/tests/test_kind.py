"""The kind cluster and the development manifests of the kind + Tilt loop: the kind
config against a strict schema of kind's v1alpha4 Cluster (data/, written from kind's
documented fields), wired for ingress and the local registry the way kind documents
it; every k8s/dev manifest (and the kustomize build, when kubectl is installed)
against the Kubernetes schemas, strictly; and what the dev stack must provide.
"""

import json
import re
import shutil
import subprocess
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml

from conftest import ROOT

KIND = ROOT / "k8s" / "kind"
DEV = ROOT / "k8s" / "dev"
SCHEMA = json.loads((Path(__file__).parent / "data" / "kind-cluster-v1alpha4.schema.json").read_text())
VERSIONS = ["1.30.0", kubernetes_validate.utils.latest_version()]


def cluster():
    return yaml.safe_load((KIND / "cluster.yaml").read_text())


def test_kind_config_matches_the_v1alpha4_schema_strictly():
    jsonschema.validate(cluster(), SCHEMA)
    bad = cluster()
    bad["nodes"][0]["extraPortMapping"] = bad["nodes"][0].pop("extraPortMappings")
    with pytest.raises(jsonschema.ValidationError, match="extraPortMapping"):
        jsonschema.validate(bad, SCHEMA)


def test_ingress_ports_reach_the_host_on_loopback_and_the_node_is_ingress_ready():
    [node] = cluster()["nodes"]
    assert node["role"] == "control-plane"
    mappings = {(m["containerPort"], m["hostPort"], m["listenAddress"]) for m in node["extraPortMappings"]}
    assert mappings == {(80, 80, "127.0.0.1"), (443, 443, "127.0.0.1")}
    patches = [yaml.safe_load(p) for p in node["kubeadmConfigPatches"]]
    assert any(p["kind"] == "InitConfiguration" and
               p["nodeRegistration"]["kubeletExtraArgs"]["node-labels"] == "ingress-ready=true" for p in patches)


def test_local_registry_is_wired_as_kind_documents():
    [patch] = cluster()["containerdConfigPatches"]
    assert 'config_path = "/etc/containerd/certs.d"' in patch
    up = (KIND / "up.sh").read_text()
    port = re.search(r"^REGISTRY_PORT=(\d+)$", up, re.M).group(1)
    assert port == "5001" and "REGISTRY=kind-registry" in up
    assert '/etc/containerd/certs.d/localhost:$REGISTRY_PORT' in up and '[host."http://%s:5000"]' in up
    assert "docker network connect kind" in up
    hosting = yaml.safe_load((KIND / "local-registry-hosting.yaml").read_text())
    assert hosting["metadata"] == {"name": "local-registry-hosting", "namespace": "kube-public"}
    assert yaml.safe_load(hosting["data"]["localRegistryHosting.v1"])["host"] == f"localhost:{port}"
    for version in VERSIONS:
        kubernetes_validate.validate(hosting, version, strict=True)


def test_ingress_nginx_and_keda_are_pinned_release_manifests():
    up = (KIND / "up.sh").read_text()
    assert re.search(r"^INGRESS_NGINX_VERSION=controller-v\d+\.\d+\.\d+$", up, re.M)
    assert re.search(r"^KEDA_VERSION=\d+\.\d+\.\d+$", up, re.M)
    assert "deploy/static/provider/kind/deploy.yaml" in up and "releases/download/v$KEDA_VERSION" in up


def dev_objects():
    kustomization = yaml.safe_load((DEV / "kustomization.yaml").read_text())
    listed = set(kustomization["resources"])
    on_disk = {p.name for p in DEV.glob("*.yaml")} - {"kustomization.yaml"}
    assert listed == on_disk, "every manifest in k8s/dev is in kustomization.yaml, and only those"
    return [(name, doc) for name in sorted(listed) for doc in yaml.safe_load_all((DEV / name).read_text()) if doc]


@pytest.mark.parametrize("version", VERSIONS)
def test_every_dev_manifest_validates_strictly(version):
    failures = []
    objects = dev_objects()
    if shutil.which("kubectl"):
        built = subprocess.run(["kubectl", "kustomize", str(DEV)], capture_output=True, text=True, check=True).stdout
        objects += [("kustomize build", d) for d in yaml.safe_load_all(built) if d]
    for source, obj in objects:
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.ValidationError as err:
            failures.append(f"{source} {obj['kind']}/{obj['metadata']['name']}: {'.'.join(map(str, err.path))}: {err.message}")
    assert not failures, "\n".join(failures)


def test_dev_stack_provides_what_the_chart_and_controller_expect():
    objects = {(o["kind"], o["metadata"]["name"]): o for _, o in dev_objects()}
    services = {name: o for (kind, name), o in objects.items() if kind == "Service"}
    assert {"postgres", "redis", "elasticmq", "jaeger"} <= set(services)
    jaeger_ports = {p["port"] for p in services["jaeger"]["spec"]["ports"]}
    assert {4317, 4318, 16686} <= jaeger_ports
    assert {p["port"] for p in services["elasticmq"]["spec"]["ports"]} >= {9324}
    jaeger = objects[("Deployment", "jaeger")]["spec"]["template"]["spec"]["containers"][0]
    assert {"name": "COLLECTOR_OTLP_ENABLED", "value": "true"} in jaeger["env"]
    elasticmq = objects[("Deployment", "elasticmq")]["spec"]["template"]["spec"]["containers"][0]
    assert elasticmq["image"].startswith("softwaremill/elasticmq-native:")
    assert any(m["mountPath"] == "/opt/elasticmq.conf" for m in elasticmq["volumeMounts"])
    assert objects[("StatefulSet", "postgres")]["spec"]["template"]["spec"]["containers"][0]["image"] == "postgres:15"
    # The Secrets the chart's OrderPipeline refers to by default.
    chart = yaml.safe_load((ROOT / "charts" / "orderflow" / "values.yaml").read_text())["pipeline"]["spec"]
    assert ("Secret", chart["databases"]["server"]["adminSecretRef"]["name"]) in objects
    assert ("Secret", chart["sqs"]["credentialsSecretRef"]["name"]) in objects
    kustomization = yaml.safe_load((DEV / "kustomization.yaml").read_text())
    assert kustomization["configMapGenerator"] == [{"name": "elasticmq-config", "files": ["elasticmq.conf"]}]
