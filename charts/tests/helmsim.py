"""A small model of a namespace during `helm upgrade`, for the keda.enabled switch:
the objects, Helm's upgrade order, KEDA's webhook (kedarules.py) and its ScaledObject
controller, and the garbage collector. Only what the switch touches is modelled.

What each part does, and where that is written:
- Helm 3 (https://github.com/helm/helm, v3.18): pkg/action/upgrade.go computes the
  objects new to the release and refuses one that exists unless it carries the
  release's ownership metadata (pkg/action/validate.go, existingResourceConflict and
  checkOwnership: label app.kubernetes.io/managed-by=Helm, annotations
  meta.helm.sh/release-name and -namespace); an adopted object enters the old release
  as its new manifest. pkg/kube/client.go Update creates or patches every object of the
  new release, in pkg/releaseutil/kind_sorter.go's InstallOrder (kinds it does not
  know last), and only then deletes what only the old release had, re-reading each
  live object and skipping those annotated helm.sh/resource-policy: keep; deletion
  propagates in the background. Helm labels and annotates every object it writes
  (setMetadataVisitor). A patch sets what the manifest says and removes what the
  previous manifest had and this one lacks; it leaves ownerReferences alone.
- KEDA's ScaledObject controller (controllers/keda/hpa.go): makes the HPA named by
  getHpaName, or rewrites an HPA of that name: its spec from the ScaledObject, labels
  KEDA's own overlaid with the ScaledObject's, annotations the ScaledObject's, and the
  ScaledObject as controller owner. It watches the HPAs it owns, so one deleted under
  it is made again.
- The garbage collector deletes an object once an owner it names is gone
  (https://kubernetes.io/docs/concepts/architecture/garbage-collection/).
"""

import copy
import itertools

import kedarules

# pkg/releaseutil/kind_sorter.go InstallOrder, the kinds the chart renders.
INSTALL_ORDER = [
    "NetworkPolicy", "PodDisruptionBudget", "ServiceAccount", "Secret", "ConfigMap", "ClusterRole",
    "Role", "RoleBinding", "Service", "Pod", "Deployment", "HorizontalPodAutoscaler", "Ingress",
]
MANAGED_BY = "app.kubernetes.io/managed-by"
RELEASE_NAME = "meta.helm.sh/release-name"
RELEASE_NAMESPACE = "meta.helm.sh/release-namespace"


def key(obj: dict) -> tuple[str, str]:
    return (obj["kind"], obj["metadata"]["name"])


class Namespace:
    """The live objects of one namespace, with KEDA and the garbage collector running in it."""

    def __init__(self):
        self.objects: dict[tuple[str, str], dict] = {}
        self.uids = itertools.count(1)

    def of_kind(self, kind: str) -> list[dict]:
        return [o for o in self.objects.values() if o["kind"] == kind]

    def admit(self, obj: dict) -> None:
        if obj["kind"] == "ScaledObject":
            kedarules.admit_scaled_object(obj, self.of_kind("HorizontalPodAutoscaler"), self.of_kind("ScaledObject"))
        elif obj["kind"] == "TriggerAuthentication":
            kedarules.admit_trigger_authentication(obj)

    def create(self, obj: dict) -> None:
        self.admit(obj)
        obj = copy.deepcopy(obj)
        obj["metadata"]["uid"] = next(self.uids)
        self.objects[key(obj)] = obj

    def replace(self, obj: dict) -> None:
        self.admit(obj)
        self.objects[key(obj)] = obj

    def delete(self, k: tuple[str, str]) -> None:
        gone = self.objects.pop(k, None)
        if gone is None:
            return
        for dependent in [o for o in self.objects.values() if any(
                ref["uid"] == gone["metadata"]["uid"] for ref in o["metadata"].get("ownerReferences", []))]:
            self.delete(key(dependent))

    def keda_reconcile(self) -> None:
        """KEDA's controller, once over every ScaledObject."""
        for so in self.of_kind("ScaledObject"):
            name = kedarules.hpa_name(so)
            meta = so["metadata"]
            labels = {MANAGED_BY: "keda-operator", "app.kubernetes.io/name": name, **meta.get("labels", {})}
            hpa = {
                "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
                "metadata": {
                    "name": name, "labels": labels, "annotations": dict(meta.get("annotations", {})),
                    "ownerReferences": [{"kind": "ScaledObject", "name": meta["name"], "uid": meta["uid"], "controller": True}],
                },
                "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", **so["spec"]["scaleTargetRef"]},
                         "minReplicas": max(so["spec"].get("minReplicaCount", 0), 1),
                         "maxReplicas": so["spec"].get("maxReplicaCount", 100),
                         "metrics": [{"type": "External"}]},
            }
            live = self.objects.get(("HorizontalPodAutoscaler", name))
            if live is None:
                self.create(hpa)
            else:
                hpa["metadata"]["uid"] = live["metadata"]["uid"]
                self.objects[key(hpa)] = hpa


def _stamp(obj: dict, release: str, namespace: str) -> dict:
    """setMetadataVisitor: Helm's ownership metadata on what it writes."""
    obj = copy.deepcopy(obj)
    obj["metadata"].setdefault("labels", {})[MANAGED_BY] = "Helm"
    annotations = obj["metadata"].setdefault("annotations", {})
    annotations[RELEASE_NAME], annotations[RELEASE_NAMESPACE] = release, namespace
    return obj


def _patch(live: dict, previous: dict, wanted: dict) -> dict:
    merged = copy.deepcopy(live)
    for field in ("labels", "annotations"):
        values = merged["metadata"].setdefault(field, {})
        for dropped in set(previous["metadata"].get(field, {})) - set(wanted["metadata"].get(field, {})):
            values.pop(dropped, None)
        values.update(wanted["metadata"].get(field, {}))
    merged["spec"] = copy.deepcopy(wanted.get("spec"))
    return merged


def _install_order(obj: dict) -> int:
    return INSTALL_ORDER.index(obj["kind"]) if obj["kind"] in INSTALL_ORDER else len(INSTALL_ORDER)


def helm_upgrade(ns: Namespace, release: str, namespace: str, old: list[dict], new: list[dict], keda_between_steps: bool) -> None:
    """`helm upgrade` from the manifest `old` to `new`; raises kedarules.Refused where the real one fails.
    With keda_between_steps KEDA reconciles after every write, otherwise only afterwards."""
    old_by_key = {key(o): o for o in old}
    new = [_stamp(o, release, namespace) for o in sorted(new, key=_install_order)]
    for obj in new:
        live = ns.objects.get(key(obj))
        if key(obj) in old_by_key or live is None:
            continue
        labels, annotations = live["metadata"].get("labels", {}), live["metadata"].get("annotations", {})
        if labels.get(MANAGED_BY) != "Helm" or annotations.get(RELEASE_NAME) != release or annotations.get(RELEASE_NAMESPACE) != namespace:
            raise kedarules.Refused(f"{obj['kind']} {obj['metadata']['name']} exists and cannot be imported into the current release")
        old_by_key[key(obj)] = obj  # adopted: its new manifest stands in for the old one
    for obj in new:
        live = ns.objects.get(key(obj))
        if live is None:
            ns.create(obj)
        else:
            ns.replace(_patch(live, old_by_key[key(obj)], obj))
        if keda_between_steps:
            ns.keda_reconcile()
    wanted = {key(o) for o in new}
    for k in [k for k in old_by_key if k not in wanted]:
        live = ns.objects.get(k)
        if live and live["metadata"].get("annotations", {}).get("helm.sh/resource-policy") != "keep":
            ns.delete(k)
        if keda_between_steps:
            ns.keda_reconcile()
    ns.keda_reconcile()


def helm_install(ns: Namespace, release: str, namespace: str, manifest: list[dict]) -> None:
    helm_upgrade(ns, release, namespace, [], manifest, keda_between_steps=True)
