"""The kind cluster and the development manifests of the kind + Tilt loop: the kind
config against a strict schema of kind's v1alpha4 Cluster (data/, written from kind's
documented fields), wired for ingress and the local registry the way kind documents
it; its pinned node image against kind's release notes, the chart's kubeVersion and
the add-ons' supported versions, and up.sh's refusal of an older kind or cluster
(run against stand-ins for docker, kind and kubectl); every k8s/dev manifest (and the
kustomize build, when kubectl is installed) against the Kubernetes schemas, strictly;
and what the dev stack must provide.
"""

import json
import os
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


# kind publishes node images per release, each build pinned by digest, and supports an
# image "with the kind version they were released with (and best effort with other
# releases)" (https://kind.sigs.k8s.io/docs/design/node-image). The images each release's
# notes list under "Images pre-built for this release" (copied from
# https://github.com/kubernetes-sigs/kind/releases/tag/v0.25.0 and .../v0.30.0):
KIND_RELEASE_IMAGES = {
    "0.25.0": {
        "kindest/node:v1.31.2@sha256:18fbefc20a7113353c7b75b5c869d7145a6abd6269154825872dc59c1329912e",
    },
    "0.30.0": {
        "kindest/node:v1.34.0@sha256:7416a61b42b1662ca6ca89f02028ac133a309a2a30ba309614e8ec94d976dc5a",
        "kindest/node:v1.33.4@sha256:25a6018e48dfcaee478f4a59af81157a437f15e6e140bf103f85a2e7cd0cbbf2",
        "kindest/node:v1.32.8@sha256:abd489f042d2b644e2d033f5c2d900bc707798d075e8186cb65e3f1367a9d5a1",
        "kindest/node:v1.31.12@sha256:0f5cc49c5e73c0c2bb6e2df56e7df189240d83cf94edfa30946482eb08ec57d2",
    },
}
# Kubernetes minors each add-on version up.sh installs is tested on: KEDA's compatibility
# matrix (https://keda.sh/docs/2.16/operate/cluster/#kubernetes-compatibility) and
# ingress-nginx's "Supported Versions table" (https://github.com/kubernetes/ingress-nginx#supported-versions-table).
KEDA_KUBERNETES = {"2.16": range(29, 32)}
INGRESS_NGINX_KUBERNETES = {"1.12": range(28, 33)}


def node_image() -> str:
    [node] = cluster()["nodes"]
    return node["image"]


def node_version() -> tuple[int, int, int]:
    match = re.fullmatch(r"kindest/node:v(\d+)\.(\d+)\.(\d+)@sha256:[0-9a-f]{64}", node_image())
    assert match, f"{node_image()}: pin kindest/node:vX.Y.Z@sha256:<digest>"
    return tuple(int(g) for g in match.groups())


def satisfies(version: tuple[int, int, int], constraint: str) -> bool:
    """Helm's kubeVersion semver constraint (comparisons ANDed by space or comma, `||` ORs),
    as far as Chart.yaml uses it; a `-0` pre-release suffix only admits pre-releases."""
    def holds(term: str) -> bool:
        op, wanted = re.fullmatch(r"(>=|<=|>|<|=|!=)?\s*v?(\d+(?:\.\d+){0,2})(?:-\S+)?", term).groups()
        want = tuple(int(p) for p in (wanted.split(".") + ["0", "0"])[:3])
        return {">=": version >= want, "<=": version <= want, ">": version > want, "<": version < want,
                "!=": version != want}.get(op or "=", version == want)
    return any(all(holds(t) for t in re.split(r"[\s,]+", alt.strip()) if t) for alt in constraint.split("||"))


def kind_release_of(image: str) -> str:
    [release] = [r for r, images in KIND_RELEASE_IMAGES.items() if image in images] or [None]
    assert release, f"{image} is not an image kind's release notes list (KIND_RELEASE_IMAGES)"
    return release


def test_the_node_image_is_pinned_by_digest_and_satisfies_the_charts_kube_version():
    chart = yaml.safe_load((ROOT / "charts/orderflow/Chart.yaml").read_text())
    assert satisfies(node_version(), chart["kubeVersion"]), (node_image(), chart["kubeVersion"])
    # The checker itself: kind 0.20-0.22's defaults (1.27-1.29) are refused, 1.30 is not.
    assert not satisfies((1, 29, 2), chart["kubeVersion"]) and satisfies((1, 30, 0), chart["kubeVersion"])


def test_the_node_image_is_one_kinds_release_notes_ship_and_up_sh_requires_that_kind():
    release = kind_release_of(node_image())
    up = (KIND / "up.sh").read_text()
    assert re.search(r"^KIND_MIN_VERSION=(\S+)$", up, re.M).group(1) == release


def test_the_node_kubernetes_is_one_the_pinned_keda_and_ingress_nginx_support():
    up = (KIND / "up.sh").read_text()
    keda = re.search(r"^KEDA_VERSION=(\d+\.\d+)\.\d+$", up, re.M).group(1)
    nginx = re.search(r"^INGRESS_NGINX_VERSION=controller-v(\d+\.\d+)\.\d+$", up, re.M).group(1)
    major, minor, _ = node_version()
    assert major == 1 and minor in KEDA_KUBERNETES[keda], f"KEDA {keda} is not tested on 1.{minor}"
    assert minor in INGRESS_NGINX_KUBERNETES[nginx], f"ingress-nginx {nginx} is not tested on 1.{minor}"


def run_up(tmp_path, kind_version: str, running_kubelet: str = "") -> tuple[subprocess.CompletedProcess, str]:
    """k8s/kind/up.sh against stand-ins: docker and kubectl succeed and log their calls,
    kind prints `kind_version`, and kubectl reports an existing node at `running_kubelet`."""
    bin_dir, log = tmp_path / "bin", tmp_path / "calls.log"
    bin_dir.mkdir()
    tools = {
        "docker": f'echo "docker $*" >> {log}',
        "kind": f'case "$1" in version) echo "kind v{kind_version} go1.24.6 linux/amd64";; '
                f'get) [ "$2" = clusters ] && [ -n "{running_kubelet}" ] && echo orderflow;; esac; echo "kind $*" >> {log}',
        "kubectl": f'echo "kubectl $*" >> {log}; case "$*" in *kubeletVersion*) echo "{running_kubelet}";; esac',
    }
    for name, body in tools.items():
        (bin_dir / name).write_text(f"#!/bin/sh\n{body}\nexit 0\n")
        (bin_dir / name).chmod(0o755)
    env = os.environ | {"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    proc = subprocess.run([str(KIND / "up.sh")], capture_output=True, text=True, env=env, timeout=60)
    return proc, log.read_text() if log.exists() else ""


@pytest.mark.parametrize("old", ["0.20.0", "0.22.0", "0.29.0"])
def test_up_sh_refuses_a_kind_older_than_the_node_images_release(tmp_path, old):
    proc, calls = run_up(tmp_path, old)
    assert proc.returncode != 0
    assert f"kind {old} is too old" in proc.stderr and "KIND_MIN_VERSION" not in proc.stderr
    assert kind_release_of(node_image()) in proc.stderr
    assert "docker" not in calls and "kind create" not in calls, "nothing may start before the version check"


@pytest.mark.parametrize("version", ["0.30.0", "0.31.0", "1.0.0"])
def test_up_sh_creates_the_cluster_from_the_config_with_a_recent_enough_kind(tmp_path, version):
    proc, calls = run_up(tmp_path, version)
    assert proc.returncode == 0, proc.stderr
    assert "kind create cluster --config k8s/kind/cluster.yaml" in calls
    keda = re.search(r"^KEDA_VERSION=(\S+)$", (KIND / "up.sh").read_text(), re.M).group(1)
    assert f"keda-{keda}.yaml" in calls, "up.sh ran to the end"


def test_up_sh_refuses_an_existing_cluster_on_another_kubernetes(tmp_path):
    proc, calls = run_up(tmp_path, "0.30.0", running_kubelet="v1.29.2")
    assert proc.returncode != 0
    assert "runs Kubernetes v1.29.2" in proc.stderr and "make kind-down" in proc.stderr
    assert "kind create" not in calls
    same = tmp_path / "same"
    same.mkdir()
    major, minor, patch = node_version()
    proc, calls = run_up(same, "0.30.0", running_kubelet=f"v{major}.{minor}.{patch}")
    assert proc.returncode == 0, proc.stderr
    assert "kind create" not in calls, "an existing cluster on the pinned version is reused"


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
