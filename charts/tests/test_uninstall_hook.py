"""The uninstall hook (templates/uninstall-hook.yaml): on `helm uninstall` a pre-delete Job
runs `orderflow-controller delete-pipeline` with the controller's image and its own
ServiceAccount and Role, so the OrderPipeline is deleted, and its finalizer removed by the
still-running controller, before Helm deletes anything.

Helm's rules these tests apply to the rendered chart (Helm 3.18, the version
scripts/k8s-tools.sh installs):
- `helm uninstall` runs the pre-delete hooks first, then deletes the release's objects
  (helm/helm pkg/action/uninstall.go: `execHook(rel, release.HookPreDelete, ...)` before
  `deleteRelease`), and fails without deleting anything when a hook fails;
- hooks run one after another, sorted by `helm.sh/hook-weight`, then kind (install order),
  then name; a Job hook is awaited until it completes (pkg/action/hooks.go, `hookByWeight`;
  https://helm.sh/docs/topics/charts_hooks/#hooks-and-the-release-lifecycle);
- the release's objects are deleted kind by kind in `UninstallOrder`, kinds Helm does not
  know, such as OrderPipeline, last (pkg/releaseutil/kind_sorter.go in Helm 3,
  pkg/release/util/kind_sorter.go in Helm 4;
  https://github.com/helm/helm/blob/main/pkg/release/util/kind_sorter.go).
"""

import re

import pytest

from conftest import CHART, NAMESPACE, RELEASE, ROOT, VALUE_SET_IDS, VALUE_SETS, by_kind, load_values, one, render

FULL = f"{RELEASE}-orderflow"
HOOK = f"{FULL}-uninstall"
CONTROLLER = f"{FULL}-controller"
HOOK_KINDS = {"ServiceAccount", "Role", "RoleBinding", "NetworkPolicy", "Job"}

# Helm's kind orders, as in kind_sorter.go (Helm 4's list; Helm 3.18 has the same kinds
# that this chart renders in the same relative order).
INSTALL_ORDER = [
    "PriorityClass", "Namespace", "NetworkPolicy", "ResourceQuota", "LimitRange", "PodSecurityPolicy",
    "PodDisruptionBudget", "ServiceAccount", "Secret", "SecretList", "ConfigMap", "StorageClass",
    "PersistentVolume", "PersistentVolumeClaim", "CustomResourceDefinition", "ClusterRole", "ClusterRoleList",
    "ClusterRoleBinding", "ClusterRoleBindingList", "Role", "RoleList", "RoleBinding", "RoleBindingList",
    "Service", "DaemonSet", "Pod", "ReplicationController", "ReplicaSet", "Deployment",
    "HorizontalPodAutoscaler", "StatefulSet", "Job", "CronJob", "IngressClass", "Ingress", "APIService",
    "MutatingWebhookConfiguration", "ValidatingWebhookConfiguration",
]
UNINSTALL_ORDER = [
    "ValidatingWebhookConfiguration", "MutatingWebhookConfiguration", "APIService", "Ingress", "IngressClass",
    "Service", "CronJob", "Job", "StatefulSet", "HorizontalPodAutoscaler", "Deployment", "ReplicaSet",
    "ReplicationController", "Pod", "DaemonSet", "RoleBindingList", "RoleBinding", "RoleList", "Role",
    "ClusterRoleBindingList", "ClusterRoleBinding", "ClusterRoleList", "ClusterRole", "CustomResourceDefinition",
    "PersistentVolumeClaim", "PersistentVolume", "StorageClass", "ConfigMap", "SecretList", "Secret",
    "ServiceAccount", "PodDisruptionBudget", "PodSecurityPolicy", "LimitRange", "ResourceQuota", "NetworkPolicy",
    "Namespace", "PriorityClass",
]


def annotations(obj):
    return obj["metadata"].get("annotations") or {}


def events(obj):
    return {e.strip() for e in annotations(obj).get("helm.sh/hook", "").split(",") if e.strip()}


def kind_rank(order, kind):
    """Position in a Helm kind order; unknown kinds sort after every known one."""
    return order.index(kind) if kind in order else len(order)


def pre_delete_hooks(objects):
    """The pre-delete hooks in the order Helm runs them (weight, kind, name)."""
    hooks = [o for o in objects if "pre-delete" in events(o)]
    return sorted(hooks, key=lambda o: (int(annotations(o).get("helm.sh/hook-weight", "0")),
                                        kind_rank(INSTALL_ORDER, o["kind"]), o["metadata"]["name"]))


def release_objects(objects):
    """What `helm uninstall` deletes itself: the manifest (no hooks), minus resource-policy keep."""
    return [o for o in objects if not events(o) and annotations(o).get("helm.sh/resource-policy") != "keep"]


def uninstall_timeline(objects):
    """[(step, objects existing while it runs)] of `helm uninstall`: each hook in turn, then
    each deletion in Helm's order."""
    release = release_objects(objects)
    steps, created = [], []
    for hook in pre_delete_hooks(objects):
        created.append(hook)
        steps.append((("hook", hook["kind"], hook["metadata"]["name"]), release + list(created)))
    # Known kinds by their rank; unknown ones after them, by kind, then name.
    remaining = sorted(release, key=lambda o: (kind_rank(UNINSTALL_ORDER, o["kind"]), o["kind"], o["metadata"]["name"]))
    while remaining:
        gone = remaining.pop(0)
        steps.append((("delete", gone["kind"], gone["metadata"]["name"]), list(remaining)))
    return steps


def keys(objects):
    return {(o["kind"], o["metadata"]["name"]) for o in objects}


def hook_renders(values):
    return values["pipeline"]["create"] and values["controller"]["enabled"] and values["controller"]["rbac"]["create"]


def render_with_hook(values_file):
    """The objects of a value set that renders the hook; a set that does not is
    skipped (visibly: the test has nothing to check there)."""
    if not hook_renders(load_values(values_file)):
        pytest.skip("this value set renders no uninstall hook (pipeline, controller or its RBAC not the chart's)")
    return render(values_file)


@pytest.mark.parametrize("values_file", VALUE_SETS, ids=VALUE_SET_IDS)
def test_the_hook_renders_when_the_chart_owns_both_pipeline_and_controller(values_file):
    values = load_values(values_file)
    hooks = [o for o in render(values_file) if "pre-delete" in events(o)]
    if not hook_renders(values):
        assert hooks == []
        return
    expected = {"ServiceAccount", "Role", "RoleBinding", "Job"} | ({"NetworkPolicy"} if values["networkPolicy"]["enabled"] else set())
    assert keys(hooks) == {(k, HOOK) for k in expected}


@pytest.mark.parametrize("extra", [("pipeline.create=false", "pipeline.name=existing"), ("controller.enabled=false",),
                                   ("controller.rbac.create=false",)])
def test_no_hook_without_the_charts_pipeline_controller_or_rbac(extra):
    assert not [o for o in render(None, extra) if "pre-delete" in events(o)]


def test_hook_annotations_weights_and_delete_policies():
    hooks = {o["kind"]: o for o in render(None) if "pre-delete" in events(o)}
    assert set(hooks) == HOOK_KINDS
    weight = {kind: int(annotations(o)["helm.sh/hook-weight"]) for kind, o in hooks.items()}
    # What the Job needs exists before it starts: lower weights run (and are created) first.
    assert all(weight[k] < weight["Job"] for k in HOOK_KINDS - {"Job"}), weight
    assert weight["ServiceAccount"] < weight["Role"] < weight["RoleBinding"], weight
    for kind, obj in hooks.items():
        assert events(obj) == {"pre-delete"}, kind
        policies = set(annotations(obj)["helm.sh/hook-delete-policy"].split(","))
        # Gone after a good uninstall, replaced by the next attempt; a failed Job stays for its logs.
        assert policies == {"before-hook-creation", "hook-succeeded"}, kind


def test_the_hook_role_grants_exactly_what_delete_pipeline_does_on_the_charts_pipeline():
    objects = render(None)
    pipeline = by_kind(objects, "OrderPipeline")[0]["metadata"]["name"]
    role = one(objects, "Role", HOOK)
    # The Rust tests (services/controller/tests/delete_pipeline.rs) authorize every request of
    # the subcommand with the same file, and check it uses each verb granted.
    assert role["rules"] == [{"apiGroups": ["orderflow.dev"], "resources": ["orderpipelines"],
                              "resourceNames": [pipeline], "verbs": ["delete", "get"]}]
    source = (CHART / "files" / "uninstall-hook-rules.yaml").read_text()
    assert "{{ include \"orderflow.pipelineName\" . }}" in source
    binding = one(objects, "RoleBinding", HOOK)
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": HOOK}
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": HOOK, "namespace": NAMESPACE}]


def test_a_named_pipeline_is_the_one_the_hook_may_delete_and_deletes():
    objects = render(None, ("pipeline.name=orders",))
    assert one(objects, "Role", HOOK)["rules"][0]["resourceNames"] == ["orders"]
    assert one(objects, "Job", HOOK)["spec"]["template"]["spec"]["containers"][0]["args"][1] == "orders"


@pytest.mark.parametrize("values_file", VALUE_SETS, ids=VALUE_SET_IDS)
def test_the_job_runs_delete_pipeline_with_the_controllers_image_and_the_hooks_account(values_file):
    values = load_values(values_file)
    objects = render_with_hook(values_file)
    job = one(objects, "Job", HOOK)
    pod = job["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    controller = one(objects, "Deployment", CONTROLLER)["spec"]["template"]["spec"]["containers"][0]
    assert (container["image"], container["imagePullPolicy"]) == (controller["image"], controller["imagePullPolicy"])
    pipeline = by_kind(objects, "OrderPipeline")[0]["metadata"]["name"]
    timeout = values["pipeline"]["uninstallTimeoutSeconds"]
    assert container["args"] == ["delete-pipeline", pipeline, f"--namespace={NAMESPACE}", f"--timeout-seconds={timeout}"]
    assert pod["serviceAccountName"] == HOOK and pod["automountServiceAccountToken"] is True
    assert one(objects, "ServiceAccount", HOOK)["automountServiceAccountToken"] is False
    assert pod["restartPolicy"] == "Never"
    # Kubernetes ends the Job after its deadline even if the process hangs; the wait fits inside.
    assert job["spec"]["activeDeadlineSeconds"] > timeout
    assert job["spec"]["backoffLimit"] <= 1


def test_a_timeout_fails_the_job_at_once_with_the_exit_code_the_subcommand_uses():
    source = (ROOT / "services" / "controller" / "src" / "delete_pipeline.rs").read_text()
    exit_timed_out = int(re.search(r"pub const EXIT_TIMED_OUT: i32 = (\d+);", source).group(1))
    job = one(render(None), "Job", HOOK)
    rules = job["spec"]["podFailurePolicy"]["rules"]
    assert rules == [{"action": "FailJob", "onExitCodes": {"containerName": "delete-pipeline",
                                                          "operator": "In", "values": [exit_timed_out]}}]


def test_the_timeout_is_a_value_below_helms_default_uninstall_timeout():
    values = load_values(None)
    assert values["pipeline"]["uninstallTimeoutSeconds"] < 300, "helm uninstall --timeout defaults to 5m"
    job = one(render(None, ("pipeline.uninstallTimeoutSeconds=45",)), "Job", HOOK)
    assert job["spec"]["template"]["spec"]["containers"][0]["args"][-1] == "--timeout-seconds=45"


def test_the_hook_pod_may_reach_only_dns_and_the_api_server():
    objects = render(None)
    values = load_values(None)
    labels = one(objects, "Job", HOOK)["spec"]["template"]["metadata"]["labels"]
    deny = one(objects, "NetworkPolicy", f"{FULL}-default-deny")["spec"]
    assert deny["podSelector"]["matchLabels"].items() <= labels.items(), "the default deny applies to the hook pod"
    own = one(objects, "NetworkPolicy", HOOK)["spec"]
    assert own["podSelector"]["matchLabels"].items() <= labels.items()
    assert "ingress" not in own and set(own["policyTypes"]) == {"Ingress", "Egress"}
    ports = {p["port"] for rule in own["egress"] for p in rule["ports"]}
    assert ports == {53, *values["networkPolicy"]["egress"]["kubeApiServerPorts"]}
    # No other component's policy opens anything to it.
    for policy in by_kind(objects, "NetworkPolicy"):
        if policy["metadata"]["name"] not in (HOOK, f"{FULL}-default-deny"):
            assert not policy["spec"]["podSelector"]["matchLabels"].items() <= labels.items(), policy["metadata"]["name"]


def controller_and_its_rbac(objects):
    deployment = one(objects, "Deployment", CONTROLLER)
    account = deployment["spec"]["template"]["spec"]["serviceAccountName"]
    return {("Deployment", CONTROLLER), ("ServiceAccount", account), ("Role", CONTROLLER), ("RoleBinding", CONTROLLER)}


@pytest.mark.parametrize("values_file", VALUE_SETS, ids=VALUE_SET_IDS)
def test_while_the_job_runs_the_controller_and_its_rbac_and_the_pipeline_still_exist(values_file):
    values = load_values(values_file)
    objects = render_with_hook(values_file)
    timeline = uninstall_timeline(objects)
    (job_step,) = [(step, existing) for step, existing in timeline if step == ("hook", "Job", HOOK)]
    existing = keys(job_step[1])
    pipeline = ("OrderPipeline", by_kind(objects, "OrderPipeline")[0]["metadata"]["name"])
    assert controller_and_its_rbac(objects) | {pipeline} <= existing
    assert {(k, HOOK) for k in HOOK_KINDS - {"Job"} if (k, HOOK) in keys(objects)} <= existing, "the Job's account and Role"
    # Every hook runs before Helm deletes anything.
    first_delete = next(i for i, (step, _) in enumerate(timeline) if step[0] == "delete")
    assert all(step[0] == "hook" for step, _ in timeline[:first_delete])


def test_without_the_hook_helm_would_delete_the_controller_before_the_pipeline():
    """The defect the hook removes: in Helm's uninstall order the controller's Deployment,
    ServiceAccount, Role and RoleBinding go before the OrderPipeline (an unknown kind, last),
    so nobody is left to remove its finalizer."""
    objects = render(None)
    order = [step[1:] for step, _ in uninstall_timeline(objects) if step[0] == "delete"]
    pipeline = ("OrderPipeline", by_kind(objects, "OrderPipeline")[0]["metadata"]["name"])
    unknown = [k for k in order if k[0] not in UNINSTALL_ORDER]
    assert pipeline in unknown and order[-len(unknown):] == unknown, "kinds Helm does not know go last"
    assert all(order.index(k) < order.index(pipeline) for k in controller_and_its_rbac(objects))
