"""Rendering the chart twice gives the same bytes, for the defaults and every ci/ value set.

Argo CD (and Flux, Tilt, any `helm template | kubectl apply` pipeline) renders with
`helm template`, which does not talk to the cluster: there `lookup` returns an empty map
(Helm: https://helm.sh/docs/chart_template_guide/functions_and_pipelines/#using-the-lookup-function),
so a template that falls back to `genPrivateKey` or `randAlphaNum` makes a new secret on every
render. Argo CD re-renders on every comparison, so such an app is always OutOfSync and each
auto-sync applies a new value (https://argo-cd.readthedocs.io/en/stable/user-guide/helm/#random-data):
a rotated signing key or client-secret key. The keys are the controller's job
(docs/CONTROLLER.md, "Keys"); nothing the chart renders may change between two renders.
"""

import difflib
import re

import pytest

from conftest import CHART, NAMESPACE, RELEASE, VALUE_SET_IDS, VALUE_SETS, helm, values_args


def render_fresh(values_file) -> str:
    """A `helm template` run of its own (conftest's render_text is cached, so it would
    return the first render twice and prove nothing)."""
    return helm("template", RELEASE, str(CHART), "--namespace", NAMESPACE, *values_args(values_file)).stdout


@pytest.mark.parametrize("values_file", VALUE_SETS, ids=VALUE_SET_IDS)
def test_rendering_twice_yields_byte_identical_manifests(values_file):
    first, second = render_fresh(values_file), render_fresh(values_file)
    assert first, "the chart rendered nothing"
    if first != second:
        diff = "".join(difflib.unified_diff(first.splitlines(True), second.splitlines(True), "render 1", "render 2", n=1))
        pytest.fail(f"two renders of the same values differ (a value made at render time):\n{diff[:4000]}")


# Sprig's and Helm's functions whose result differs per render (random or read from the cluster).
UNSTABLE = re.compile(r"\b(genPrivateKey|rand(Alpha|AlphaNum|Numeric|Ascii|Bytes|Int)|uuidv4|genCA|genCAWithKey"
                      r"|genSelfSignedCert\w*|genSignedCert\w*|lookup|now|date)\b")
# A template action, comments left out: {{ ... }} not opening with /*.
ACTION = re.compile(r"\{\{(?!-?\s*/\*)-?\s*(.*?)-?\}\}", re.S)


def test_no_template_makes_random_material_or_looks_up_the_cluster():
    """The rule itself, so a new template cannot bring it back where a render happens to be
    stable (a `lookup` of an empty map falls back to whatever comes next)."""
    offenders = []
    for template in sorted((CHART / "templates").rglob("*")):
        if not template.is_file():
            continue
        for action in ACTION.findall(template.read_text()):
            if match := UNSTABLE.search(action):
                offenders.append(f"{template.relative_to(CHART)}: {match.group(0)} in {{{{ {action.strip()[:60]} }}}}")
    assert not offenders, offenders
