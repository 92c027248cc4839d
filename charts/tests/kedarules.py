"""KEDA 2.16's admission rules for ScaledObjects and TriggerAuthentications, as its
webhooks apply them, for tests that check the chart's KEDA objects against them and
for the upgrade simulation (helmsim.py). Read from https://github.com/kedacore/keda:
- apis/keda/v1alpha1/scaledobject_webhook.go: verifyHpas (an HPA KEDA does not own
  that scales the same workload refuses the ScaledObject, unless the HPA carries
  `validations.keda.sh/hpa-ownership: "false"` or the ScaledObject asks for an
  ownership transfer and names that HPA), verifyScaledObjects (one ScaledObject per
  workload and per HPA name), verifyName (names within 63 characters);
- apis/keda/v1alpha1/scaledobject_types.go: CheckFallbackValid (a fallback needs
  non-negative failureThreshold and replicas, and every trigger of metricType
  AverageValue, no cpu or memory trigger);
- apis/keda/v1alpha1/triggerauthentication_webhook.go: validateSpec (aws pod
  identity: roleArn and identityOwner workload exclude each other).
Documented at https://keda.sh/docs/2.16/reference/scaledobject-spec/ and
https://keda.sh/docs/2.16/operate/admission-webhooks/.
"""

SKIP_OWNERSHIP = "validations.keda.sh/hpa-ownership"
TRANSFER = "scaledobject.keda.sh/transfer-hpa-ownership"


class Refused(Exception):
    """An admission webhook refused the request; the message is the webhook's."""


def hpa_name(so: dict) -> str:
    """getHpaName: the HPA KEDA makes for a ScaledObject."""
    config = so["spec"].get("advanced", {}).get("horizontalPodAutoscalerConfig", {})
    return config.get("name") or f"keda-hpa-{so['metadata']['name']}"


def _target(ref: dict) -> tuple:
    return (ref.get("apiVersion", "apps/v1"), ref.get("kind", "Deployment"), ref["name"])


def verify_hpas(so: dict, hpas: list[dict]) -> None:
    annotations = so["metadata"].get("annotations", {})
    for hpa in hpas:
        if hpa["metadata"].get("annotations", {}).get(SKIP_OWNERSHIP) == "false":
            continue
        if _target(hpa["spec"]["scaleTargetRef"]) != _target(so["spec"]["scaleTargetRef"]):
            continue
        owners = hpa["metadata"].get("ownerReferences", [])
        if any(o["kind"] == "ScaledObject" and o["name"] == so["metadata"]["name"] for o in owners):
            continue
        workload = so["spec"]["scaleTargetRef"]["name"]
        if annotations.get(TRANSFER) != "true":
            raise Refused(f"the workload '{workload}' of type 'apps/v1.Deployment' is already managed by the hpa '{hpa['metadata']['name']}'")
        if hpa_name(so) != hpa["metadata"]["name"]:
            raise Refused(f"the existing hpa '{hpa['metadata']['name']}' for workload '{workload}' must be specified by name in advanced settings to enable ownership transfer")


def verify_scaled_objects(so: dict, others: list[dict]) -> None:
    for other in others:
        if other["metadata"]["name"] == so["metadata"]["name"]:
            continue
        if _target(other["spec"]["scaleTargetRef"]) == _target(so["spec"]["scaleTargetRef"]):
            raise Refused(f"the workload '{so['spec']['scaleTargetRef']['name']}' is already managed by the ScaledObject '{other['metadata']['name']}'")
        if hpa_name(other) == hpa_name(so):
            raise Refused(f"the HPA '{hpa_name(so)}' is already managed by the ScaledObject '{other['metadata']['name']}'")


def verify_name(so: dict) -> None:
    for name in (so["metadata"]["name"], hpa_name(so)):
        if len(name) > 63:
            raise Refused(f"{name!r} is {len(name)} characters long; must be no more than 63")


def check_fallback_valid(so: dict) -> None:
    fallback = so["spec"].get("fallback")
    if fallback is None:
        return
    if fallback.get("failureThreshold", -1) < 0 or fallback.get("replicas", -1) < 0:
        raise Refused("FailureThreshold & Replicas must both be greater than or equal to 0")
    for trigger in so["spec"]["triggers"]:
        if trigger["type"] in ("cpu", "memory"):
            raise Refused(f"type is {trigger['type']}, but fallback it is not supported by the CPU & memory scalers")
        if trigger.get("metricType", "") != "AverageValue":
            raise Refused(f"MetricType={trigger.get('metricType', '')}, but Fallback can only be enabled for triggers with metric of type AverageValue")


def admit_scaled_object(so: dict, hpas: list[dict], scaled_objects: list[dict]) -> None:
    """KEDA's validating webhook on a ScaledObject create or update."""
    verify_scaled_objects(so, scaled_objects)
    verify_hpas(so, hpas)
    check_fallback_valid(so)
    verify_name(so)


def admit_trigger_authentication(auth: dict) -> None:
    identity = auth["spec"].get("podIdentity")
    if identity and identity.get("provider") == "aws" and identity.get("roleArn") and identity.get("identityOwner") == "workload":
        raise Refused("roleArn of PodIdentity can't be set if KEDA isn't identityOwner")
