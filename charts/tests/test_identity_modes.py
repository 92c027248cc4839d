"""One ci/ value set per AWS identity mode, each rendering what that mode needs:
- static keys (aws-static-keys): KEDA reads the credentials Secret (secretTargetRef); no
  pod identity, no egress to the Pod Identity agent;
- IRSA (aws-irsa): KEDA's aws pod identity with identityOwner workload, which assumes the
  role in the eks.amazonaws.com/role-arn annotation of each scaled Deployment's
  ServiceAccount (KEDA's resolver reads that annotation,
  https://keda.sh/docs/2.16/authentication-providers/aws/): every one carries it;
- EKS Pod Identity (aws-eks-pod-identity): no such annotation exists, so KEDA uses its own
  identity (identityOwner keda) or a roleArn, never workload; every pod that calls AWS may
  reach the Pod Identity agent at 169.254.170.23 and fd00:ec2::23 on TCP 80
  (https://docs.aws.amazon.com/eks/latest/userguide/pod-id-agent-setup.html).
Each TriggerAuthentication also passes KEDA's own webhook rule (kedarules.py).
"""

import pytest

import kedarules
from conftest import RELEASE, VALUE_SETS, by_kind, one, render

FULL = f"{RELEASE}-orderflow"
AWS_CALLERS = [f"{FULL}-{c}" for c in ("order-api", "status-consumer", "delivery-service", "controller")]
AGENT = {"169.254.170.23/32", "fd00:ec2::23/128"}
ROLE_ANNOTATION = "eks.amazonaws.com/role-arn"


def value_set(stem):
    return next(p for p in VALUE_SETS if p and p.stem == stem)


def agent_rules(policy: dict) -> list[dict]:
    return [r for r in policy["spec"].get("egress", []) if {p.get("ipBlock", {}).get("cidr") for p in r.get("to", [])} & AGENT]


def trigger_auth(objects):
    [auth] = by_kind(objects, "TriggerAuthentication")
    kedarules.admit_trigger_authentication(auth)
    return auth["spec"]


def test_static_keys_mode():
    objects = render(value_set("aws-static-keys-values"))
    auth = trigger_auth(objects)
    assert {r["parameter"] for r in auth["secretTargetRef"]} == {"awsAccessKeyID", "awsSecretAccessKey"}
    assert {r["name"] for r in auth["secretTargetRef"]} == {"aws-sqs-keys"} and "podIdentity" not in auth
    for policy in by_kind(objects, "NetworkPolicy"):
        assert not agent_rules(policy), policy["metadata"]["name"]
    for so in by_kind(objects, "ScaledObject"):
        assert so["spec"]["triggers"][0]["metadata"]["queueURL"].startswith("https://sqs.eu-central-1.amazonaws.com/123456789012/")


def test_irsa_mode():
    objects = render(value_set("aws-irsa-values"))
    auth = trigger_auth(objects)
    assert auth["podIdentity"] == {"provider": "aws", "identityOwner": "workload"}
    accounts = {a["metadata"]["name"]: a for a in by_kind(objects, "ServiceAccount")}
    for so in by_kind(objects, "ScaledObject"):
        deployment = one(objects, "Deployment", so["spec"]["scaleTargetRef"]["name"])
        account = accounts[deployment["spec"]["template"]["spec"]["serviceAccountName"]]
        assert account["metadata"]["annotations"][ROLE_ANNOTATION].startswith("arn:aws:iam::")
    for policy in by_kind(objects, "NetworkPolicy"):
        assert not agent_rules(policy), policy["metadata"]["name"]


def test_eks_pod_identity_mode():
    objects = render(value_set("aws-eks-pod-identity-values"))
    auth = trigger_auth(objects)
    assert auth["podIdentity"]["provider"] == "aws"
    assert auth["podIdentity"].get("identityOwner") != "workload", "KEDA would look for an IRSA annotation"
    for account in by_kind(objects, "ServiceAccount"):
        assert ROLE_ANNOTATION not in account["metadata"].get("annotations", {})
    policies = {p["metadata"]["name"]: p for p in by_kind(objects, "NetworkPolicy")}
    for name in AWS_CALLERS:
        [rule] = agent_rules(policies[name])
        assert {p["ipBlock"]["cidr"] for p in rule["to"]} == AGENT
        assert rule["ports"] == [{"port": 80, "protocol": "TCP"}], name
    for name in set(policies) - set(AWS_CALLERS):
        assert not agent_rules(policies[name]), f"{name} does not call AWS"


@pytest.mark.parametrize("extra", [("keda.authentication.roleArn=arn:aws:iam::210987654321:role/sqs-reader",)])
def test_eks_pod_identity_with_a_role_for_keda(extra):
    auth = trigger_auth(render(value_set("aws-eks-pod-identity-values"), extra))
    assert auth["podIdentity"] == {"provider": "aws", "roleArn": "arn:aws:iam::210987654321:role/sqs-reader"}


def test_keda_refuses_a_role_with_the_workload_owner():
    with pytest.raises(kedarules.Refused):
        kedarules.admit_trigger_authentication({"spec": {"podIdentity": {"provider": "aws", "roleArn": "arn:x", "identityOwner": "workload"}}})
