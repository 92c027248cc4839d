"""The controller's RBAC has one source: charts/orderflow/files/controller-rules.yaml.
The chart renders it into the controller's Role, k8s/controller/rbac.yaml carries the
same rules, and the controller's Rust tests check every request their mocked API
server sees against the file (services/controller/tests/common/rbac.rs). These tests
hold the three together, so a permission added in one place and not the others fails.
"""

import pytest
import yaml

from conftest import CHART, NAMESPACE, ROOT, VALUE_SET_IDS, VALUE_SETS, by_kind, load_values, one, render

CONTROLLER = "shop-orderflow-controller"
RULES = yaml.safe_load((CHART / "files" / "controller-rules.yaml").read_text())


def k8s_role() -> dict:
    docs = yaml.safe_load_all((ROOT / "k8s" / "controller" / "rbac.yaml").read_text())
    return next(d for d in docs if d and d["kind"] == "Role")


def test_the_rules_file_is_a_list_of_namespaced_policy_rules_without_wildcards():
    assert isinstance(RULES, list) and RULES
    for rule in RULES:
        assert set(rule) <= {"apiGroups", "resources", "verbs", "resourceNames"}, rule
        assert rule["apiGroups"] and rule["resources"] and rule["verbs"], rule
        assert "*" not in rule["apiGroups"] + rule["resources"] + rule["verbs"], rule


@pytest.mark.parametrize("values_file", VALUE_SETS, ids=VALUE_SET_IDS)
def test_the_chart_renders_exactly_the_rules_file(values_file):
    values = load_values(values_file)
    objects = render(values_file)
    if not (values["controller"]["enabled"] and values["controller"]["rbac"]["create"]):
        assert not [r for r in by_kind(objects, "Role") if r["metadata"]["name"] == CONTROLLER]
        return
    role = one(objects, "Role", CONTROLLER)
    assert role["metadata"]["namespace"] == NAMESPACE
    assert role["rules"] == RULES


def test_the_plain_manifests_carry_the_same_rules():
    assert k8s_role()["rules"] == RULES


def granted(rules):
    return {(g, r): set(rule["verbs"]) for rule in rules for g in rule["apiGroups"] for r in rule["resources"]}


def test_what_kubernetes_requires_beyond_the_requests_themselves_is_granted():
    """Rules a real API server applies that no request names directly.
    - Owner references: with the OwnerReferencesPermissionEnforcement admission plugin (on in
      OpenShift), setting ownerReferences needs `delete` on the object and blockOwnerDeletion
      `update` on the owner's finalizers
      (https://kubernetes.io/docs/reference/access-authn-authz/admission-controllers/#ownerreferencespermissionenforcement).
    - A server-side apply that creates its object is authorized as `create` as well
      (kubernetes staging/src/k8s.io/apiserver/pkg/endpoints/handlers/patch.go)."""
    g = granted(RULES)
    for kind in ("configmaps", "secrets"):
        assert {"create", "patch", "delete"} <= g[("", kind)], kind
    assert g[("orderflow.dev", "orderpipelines/finalizers")] == {"update"}
    # Never the pipeline itself: only people and the uninstall hook delete it.
    assert "delete" not in g[("orderflow.dev", "orderpipelines")]
