"""The egress values a real cluster needs: the Redis port when the URL sits in a Secret
(redis.existingSecret.port), and the DNS peers and ports (networkPolicy.dns), for
NodeLocal DNSCache (a link-local listen address on each node, 169.254.20.10 by default:
https://kubernetes.io/docs/tasks/administer-cluster/nodelocaldns/) and OpenShift (DNS
pods in openshift-dns answering on 5353 behind the Service's 53:
https://docs.openshift.com/container-platform/4.16/networking/dns-operator.html).
NetworkPolicies match the packet after the Service's translation, so the peers are the
DNS pods or addresses and the ports theirs.
"""

import pytest
import yaml

from conftest import RELEASE, VALUE_SETS, by_kind, render

FULL = f"{RELEASE}-orderflow"
API = f"{FULL}-order-api"


def policies(objects):
    return {p["metadata"]["name"]: p["spec"] for p in by_kind(objects, "NetworkPolicy") if "egress" in p["spec"]}


def write(tmp_path, values) -> object:
    path = tmp_path / "values.yaml"
    path.write_text(yaml.safe_dump(values))
    return path


def redis_ports(objects):
    """Ports of the API's egress rules that other components' policies do not have (Redis)."""
    specs = policies(objects)
    ports = lambda spec: {p["port"] for r in spec["egress"] for p in r.get("ports", [])}
    others = set().union(*(ports(s) for n, s in specs.items() if n != API))
    return ports(specs[API]) - others


def test_redis_behind_a_secret_gets_its_port():
    objects = render(next(p for p in VALUE_SETS if p and p.stem == "existing-pipeline-values"))
    assert redis_ports(objects) == {6380}


@pytest.mark.parametrize("extra,port", [((), 6379), (("redis.url=redis://cache:6390",), 6390), (("redis.url=rediss://cache.example.com",), 6379)])
def test_redis_port_from_the_url(extra, port):
    assert redis_ports(render(None, extra)) == {port}


def dns_rules(objects):
    return {name: spec["egress"][0] for name, spec in policies(objects).items()}


def test_default_dns_is_kube_dns_on_53():
    for name, rule in dns_rules(render(None)).items():
        assert rule["to"] == [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
                               "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}}], name
        assert {(p["port"], p["protocol"]) for p in rule["ports"]} == {(53, "UDP"), (53, "TCP")}


def test_nodelocal_dnscache(tmp_path):
    kube_dns = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
                "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}}
    peers = [{"ipBlock": {"cidr": "169.254.20.10/32"}}, kube_dns]
    objects = render(write(tmp_path, {"networkPolicy": {"dns": {"peers": peers, "ports": [53]}}}))
    rules = dns_rules(objects)
    assert len(rules) >= 5
    for name, rule in rules.items():
        assert rule["to"] == peers, name


def test_openshift_dns(tmp_path):
    peers = [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "openshift-dns"}},
              "podSelector": {"matchLabels": {"dns.operator.openshift.io/daemonset-dns": "default"}}}]
    objects = render(write(tmp_path, {"networkPolicy": {"dns": {"peers": peers, "ports": [5353]}}}))
    for name, rule in dns_rules(objects).items():
        assert rule["to"] == peers, name
        assert {(p["port"], p["protocol"]) for p in rule["ports"]} == {(5353, "UDP"), (5353, "TCP")}
