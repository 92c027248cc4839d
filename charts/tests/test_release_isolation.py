"""Two releases in one namespace: each controller campaigns for its own Lease (LEASE_NAME,
read by `orderflow-controller run`), so one release's leader never blocks the other's,
and the Role lets it take that Lease (a rule with resourceNames must name it; create
cannot be limited by name: https://kubernetes.io/docs/reference/access-authn-authz/rbac/#referring-to-resources).
"""

import yaml

from conftest import CHART, NAMESPACE, helm


def controller_of(release: str) -> tuple[str, list[dict]]:
    out = helm("template", release, str(CHART), "--namespace", NAMESPACE).stdout
    objects = [o for o in yaml.safe_load_all(out) if o]
    name = f"{release}-orderflow-controller"
    [deployment] = [o for o in objects if o["kind"] == "Deployment" and o["metadata"]["name"] == name]
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    [role] = [o for o in objects if o["kind"] == "Role" and o["metadata"]["name"] == name]
    return env["LEASE_NAME"], role["rules"]


def test_each_release_has_its_own_lease_and_may_take_it():
    leases = {}
    for release in ("shop", "outlet"):
        lease, rules = controller_of(release)
        leases[release] = lease
        lease_rules = [r for r in rules if "coordination.k8s.io" in r["apiGroups"] and "leases" in r["resources"]]
        verbs = set().union(*(set(r["verbs"]) for r in lease_rules))
        # What kube-lease-manager sends (tests/rbac.rs runs it against the mocked API).
        assert {"get", "create", "patch"} <= verbs
        for rule in lease_rules:
            names = rule.get("resourceNames")
            if names and set(rule["verbs"]) - {"create"}:
                assert lease in names, f"{release}: the Role limits Leases to {names}"
    assert leases == {"shop": "shop-orderflow-controller", "outlet": "outlet-orderflow-controller"}
