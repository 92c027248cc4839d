"""The chart's KEDA objects against what KEDA 2.16 does with them:
- the aws-sqs-queue scaler runs in KEDA's operator, in KEDA's namespace, and a DNS name
  without a namespace resolves only in the asking pod's own namespace
  (https://kubernetes.io/docs/concepts/services-networking/dns-pod-service/#namespaces-of-services),
  so no awsEndpoint (or queueURL host) may be a bare Service name;
- a ScaledObject that scales to zero has a fallback, and every ScaledObject passes KEDA's
  fallback rule (kedarules.check_fallback_valid);
- keda.awsAccountId arrives as a string or, from `--set` or an unquoted values file, as a
  number (an unquoted leading zero is lost): the queue URLs carry its 12 digits.
"""

import ipaddress
from urllib.parse import urlparse

import pytest
import yaml

import kedarules
from conftest import CHART, NAMESPACE, RELEASE, VALUE_SET_IDS, VALUE_SETS, by_kind, helm, render


def resolves_from_any_namespace(host: str) -> bool:
    """An IP literal, or a name with a dot: <service>.<namespace>[.svc[.cluster.local]] or external."""
    try:
        ipaddress.ip_address(host.strip("[]"))
        return True
    except ValueError:
        return "." in host


def scaled_objects(values_file, extra=()):
    return by_kind(render(values_file, extra), "ScaledObject")


def keda_renders():
    for values_file, name in zip(VALUE_SETS, VALUE_SET_IDS):
        yield pytest.param(values_file, (), id=name)
    yield pytest.param(None, ("pipeline.spec.sqs.endpoint=http://localstack:4566",), id="bare-localstack")
    yield pytest.param(None, ("pipeline.spec.sqs.endpoint=http://elasticmq.queues:9324",), id="other-namespace")


@pytest.mark.parametrize("values_file,extra", keda_renders())
def test_no_awsendpoint_is_a_bare_service_name(values_file, extra):
    for so in scaled_objects(values_file, extra):
        meta = so["spec"]["triggers"][0]["metadata"]
        for url in (meta.get("awsEndpoint"), meta["queueURL"]):
            if url:
                host = urlparse(url).hostname
                assert resolves_from_any_namespace(host), f"{so['metadata']['name']}: {url} resolves only in its own namespace"


def test_a_bare_host_is_qualified_with_the_release_namespace():
    [meta, *_] = [so["spec"]["triggers"][0]["metadata"] for so in scaled_objects(None)]
    assert meta["awsEndpoint"] == f"http://elasticmq.{NAMESPACE}.svc:9324"
    assert meta["queueURL"].startswith(meta["awsEndpoint"] + "/000000000000/")
    # A host that already names its namespace, and keda.awsEndpoint, are kept as given.
    [meta, *_] = [so["spec"]["triggers"][0]["metadata"] for so in scaled_objects(None, ("pipeline.spec.sqs.endpoint=http://elasticmq.queues:9324",))]
    assert meta["awsEndpoint"] == "http://elasticmq.queues:9324"
    [meta, *_] = [so["spec"]["triggers"][0]["metadata"] for so in scaled_objects(None, ("keda.awsEndpoint=http://sqs-proxy.keda.svc:80",))]
    assert meta["awsEndpoint"] == "http://sqs-proxy.keda.svc:80"
    # The services keep the endpoint as the OrderPipeline gives it (their own namespace).
    [pipeline] = by_kind(render(None), "OrderPipeline")
    assert pipeline["spec"]["sqs"]["endpoint"] == "http://elasticmq:9324"


def test_the_resolvability_rule_is_not_vacuous():
    assert not resolves_from_any_namespace("elasticmq")
    assert resolves_from_any_namespace("elasticmq.orderflow.svc")
    assert resolves_from_any_namespace("[fd00::1]") and resolves_from_any_namespace("10.0.0.7")


@pytest.mark.parametrize("values_file", VALUE_SETS, ids=VALUE_SET_IDS)
def test_scale_to_zero_consumers_have_a_fallback_keda_admits(values_file):
    for so in scaled_objects(values_file):
        kedarules.check_fallback_valid(so)
        spec = so["spec"]
        if spec["minReplicaCount"] == 0:
            assert "fallback" in spec, f"{so['metadata']['name']} scales to zero without a fallback"
            assert 1 <= spec["fallback"]["replicas"] <= spec["maxReplicaCount"]
            assert spec["fallback"]["failureThreshold"] >= 1
        else:
            # Above zero a failing metric leaves the HPA where it is; a fallback would force its count.
            assert "fallback" not in spec


def test_some_value_set_scales_to_zero():
    assert any(so["spec"]["minReplicaCount"] == 0 for p in VALUE_SETS for so in scaled_objects(p))


def test_the_fallback_rule_refuses_what_keda_refuses():
    so = next(so for p in VALUE_SETS for so in scaled_objects(p) if "fallback" in so["spec"])
    untyped = yaml.safe_load(yaml.safe_dump(so))
    del untyped["spec"]["triggers"][0]["metricType"]
    with pytest.raises(kedarules.Refused, match="AverageValue"):
        kedarules.check_fallback_valid(untyped)
    cpu = yaml.safe_load(yaml.safe_dump(so))
    cpu["spec"]["triggers"].append({"type": "cpu", "metricType": "AverageValue", "metadata": {}})
    with pytest.raises(kedarules.Refused, match="cpu"):
        kedarules.check_fallback_valid(cpu)


def account_in_urls(objects) -> set[str]:
    return {urlparse(so["spec"]["triggers"][0]["metadata"]["queueURL"]).path.split("/")[1] for so in by_kind(objects, "ScaledObject")}


AWS = ("pipeline.spec.sqs.endpoint=",)


@pytest.mark.parametrize("given,expected", [
    ("--set=123456789012", "123456789012"),      # a number (int64) from --set
    ("--set=012345678901", "012345678901"),      # --set keeps a leading zero as a string
    ("--set-string=012345678901", "012345678901"),
    ("file:123456789012", "123456789012"),       # a number from a values file
    ("file:012345678901", "012345678901"),       # YAML reads 12345678901: the zero padded back
    ("file:'012345678901'", "012345678901"),
])
def test_aws_account_id_renders_as_its_12_digits(given, expected, tmp_path):
    values = tmp_path / "account.yaml"
    values.write_text("pipeline:\n  spec:\n    sqs:\n      endpoint: ''\n")
    if given.startswith("file:"):
        values.write_text(values.read_text() + f"keda:\n  awsAccountId: {given[5:]}\n")
        objects = render(values)
    elif given.startswith("--set-string="):
        out = helm("template", RELEASE, str(CHART), "-n", NAMESPACE, "-f", str(values),
                   "--set-string", f"keda.awsAccountId={given.split('=', 1)[1]}").stdout
        objects = [o for o in yaml.safe_load_all(out) if o]
    else:
        objects = render(values, (f"keda.awsAccountId={given.split('=', 1)[1]}",))
    assert account_in_urls(objects) == {expected}
