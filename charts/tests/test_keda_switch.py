"""Switching keda.enabled with one `helm upgrade`, both ways, over the manifests the chart
renders: no step is refused (KEDA's webhook, Helm's ownership check) and afterwards every
consumer has exactly one HPA, the one the new mode means (the chart's, or KEDA's owned by
its ScaledObject). helmsim.py models Helm's upgrade order, KEDA's webhook and controller
and the garbage collector, and says where each is written; KEDA's controller runs either
after every write of the upgrade or only after it, the two ends of its timing.

Two controls show that the model tells a working chart from a broken one: the chart's
HPA without `validations.keda.sh/hpa-ownership: "false"` (the chart before this fix) is
refused by KEDA's webhook, and KEDA's ownership transfer (ScaledObject annotation
scaledobject.keda.sh/transfer-hpa-ownership plus an HPA name equal to the chart's) passes
the first switch but loses the consumers' HPA on the way back.
"""

import copy

import pytest

import helmsim
import kedarules
from conftest import NAMESPACE, RELEASE, VALUE_SET_IDS, VALUE_SETS, render


def manifest(values_file, keda: bool) -> list[dict]:
    """The release manifest (hooks and helm tests are not part of it)."""
    objects = render(values_file, (f"keda.enabled={str(keda).lower()}",))
    return [o for o in objects if "helm.sh/hook" not in o["metadata"].get("annotations", {})]


def switchable():
    """Value sets that render with KEDA on and off (scale to zero needs KEDA)."""
    for values_file, name in zip(VALUE_SETS, VALUE_SET_IDS):
        try:
            manifest(values_file, False), manifest(values_file, True)
        except AssertionError:
            continue
        yield pytest.param(values_file, id=name)


def consumer_hpas_as_meant(ns: helmsim.Namespace, wanted: list[dict]) -> list[str]:
    """What is wrong with the autoscaling in `ns` for the release manifest `wanted`."""
    problems = []
    scalers = [o for o in wanted if o["kind"] in ("ScaledObject", "HorizontalPodAutoscaler")]
    for scaler in scalers:
        target = scaler["spec"]["scaleTargetRef"]["name"]
        hpas = [h for h in ns.of_kind("HorizontalPodAutoscaler") if h["spec"]["scaleTargetRef"]["name"] == target]
        if len(hpas) != 1:
            problems.append(f"{target}: {len(hpas)} HPAs {[h['metadata']['name'] for h in hpas]}")
            continue
        owners = [(o["kind"], o["name"]) for o in hpas[0]["metadata"].get("ownerReferences", [])]
        if scaler["kind"] == "ScaledObject":
            expected = [("ScaledObject", scaler["metadata"]["name"])]
        else:
            expected = []
            if hpas[0]["metadata"]["name"] != scaler["metadata"]["name"]:
                problems.append(f"{target}: scaled by {hpas[0]['metadata']['name']}, not the chart's HPA")
        if owners != expected:
            problems.append(f"{target}: HPA {hpas[0]['metadata']['name']} owned by {owners}, want {expected}")
    if not any(o["kind"] == "ScaledObject" for o in wanted) and ns.of_kind("ScaledObject"):
        problems.append("a ScaledObject is left")
    return problems


def play(steps: list[list[dict]], keda_between_steps: bool) -> helmsim.Namespace:
    ns = helmsim.Namespace()
    helmsim.helm_install(ns, RELEASE, NAMESPACE, steps[0])
    for old, new in zip(steps, steps[1:]):
        helmsim.helm_upgrade(ns, RELEASE, NAMESPACE, old, new, keda_between_steps)
        problems = consumer_hpas_as_meant(ns, new)
        assert not problems, problems
    return ns


@pytest.mark.parametrize("keda_between_steps", [True, False], ids=["keda-eager", "keda-late"])
@pytest.mark.parametrize("first", [False, True], ids=["from-hpa", "from-keda"])
@pytest.mark.parametrize("values_file", switchable())
def test_switching_keda_either_way_is_one_upgrade(values_file, first, keda_between_steps):
    off, on = manifest(values_file, False), manifest(values_file, True)
    steps = [off, on, off] if not first else [on, off, on]
    play(steps, keda_between_steps)


def test_the_chart_has_consumers_to_switch():
    assert len(list(switchable())) >= 4
    on = manifest(None, True)
    assert {o["kind"] for o in on} >= {"ScaledObject", "TriggerAuthentication"}


def without_hpa_ownership_skip(objects: list[dict]) -> list[dict]:
    objects = copy.deepcopy(objects)
    for o in objects:
        o["metadata"].get("annotations", {}).pop(kedarules.SKIP_OWNERSHIP, None)
    return objects


def with_ownership_transfer(objects: list[dict]) -> list[dict]:
    objects = copy.deepcopy(objects)
    for so in (o for o in objects if o["kind"] == "ScaledObject"):
        so["metadata"].setdefault("annotations", {})[kedarules.TRANSFER] = "true"
        so["spec"]["advanced"]["horizontalPodAutoscalerConfig"]["name"] = so["spec"]["scaleTargetRef"]["name"]
    return objects


def test_control_an_hpa_keda_may_not_skip_refuses_the_switch():
    off, on = without_hpa_ownership_skip(manifest(None, False)), manifest(None, True)
    with pytest.raises(kedarules.Refused, match="is already managed by the hpa"):
        play([off, on], keda_between_steps=True)


@pytest.mark.parametrize("keda_between_steps", [True, False], ids=["keda-eager", "keda-late"])
def test_control_ownership_transfer_loses_the_hpa_on_the_way_back(keda_between_steps):
    off, on = manifest(None, False), with_ownership_transfer(manifest(None, True))
    ns = play([off, on], keda_between_steps)  # the first switch works
    helmsim.helm_upgrade(ns, RELEASE, NAMESPACE, on, off, keda_between_steps)
    # Helm adopts KEDA's HPA (it carries the ScaledObject's Helm labels and annotations),
    # keeps its owner reference, deletes the ScaledObject, and the collector takes the HPA.
    assert consumer_hpas_as_meant(ns, off), "the transfer design survived the switch back"
