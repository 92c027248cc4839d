"""The chart lints and renders for the defaults and every value set in ci/, and the
schema (or a helper's `fail`) refuses each bad value set in ci-invalid/ with the
message a user needs. Each ci-invalid file names its expected message in its first
line: `# expect: <text>`.
"""

import pytest
import yaml

from conftest import CHART, INVALID_VALUES, NAMESPACE, RELEASE, VALUE_SET_IDS, VALUE_SETS, helm, render, values_args

CLUSTER_SCOPED = {"ClusterRole"}


@pytest.mark.parametrize("values_file", VALUE_SETS, ids=VALUE_SET_IDS)
def test_lint_strict(values_file):
    out = helm("lint", "--strict", str(CHART), "--namespace", NAMESPACE, *values_args(values_file)).stdout
    assert "1 chart(s) linted, 0 chart(s) failed" in out


@pytest.mark.parametrize("values_file", VALUE_SETS, ids=VALUE_SET_IDS)
def test_template_renders_named_objects(values_file):
    objects = render(values_file)
    assert objects, "helm template rendered nothing"
    keys = [(o["kind"], o["metadata"]["name"]) for o in objects]
    assert len(keys) == len(set(keys)), f"two objects share a kind and name: {sorted(keys)}"
    for o in objects:
        assert o["metadata"]["name"].startswith(RELEASE), f"{o['kind']} {o['metadata']['name']} lacks the release prefix"
        if o["kind"] in CLUSTER_SCOPED:
            # Cluster-wide names must not collide between releases in different namespaces.
            assert NAMESPACE in o["metadata"]["name"] and "namespace" not in o["metadata"]
        else:
            assert o["metadata"].get("namespace") == NAMESPACE, f"{o['kind']} {o['metadata']['name']} has no namespace"
        labels = o["metadata"].get("labels", {})
        assert labels.get("app.kubernetes.io/instance") == RELEASE, f"{o['kind']} {o['metadata']['name']} lacks labels"


def test_ci_and_invalid_sets_exist():
    """The value sets this suite promises: KEDA off, ingress with TLS, AWS with each identity
    mode (static keys, IRSA, EKS Pod Identity), scale to zero; and a few refusals."""
    names = {p.stem for p in VALUE_SETS if p}
    assert {"keda-off-values", "ingress-tls-values", "scale-to-zero-values"} <= names
    assert {"aws-static-keys-values", "aws-irsa-values", "aws-eks-pod-identity-values"} <= names
    assert len(INVALID_VALUES) >= 5


@pytest.mark.parametrize("values_file", INVALID_VALUES, ids=[p.stem for p in INVALID_VALUES])
def test_invalid_values_are_refused_with_a_clear_message(values_file):
    first = values_file.read_text().splitlines()[0]
    assert first.startswith("# expect: "), f"{values_file.name} must start with '# expect: <message>'"
    expected = first.removeprefix("# expect: ").strip()
    assert yaml.safe_load(values_file.read_text()) is not None
    proc = helm("template", RELEASE, str(CHART), "--namespace", NAMESPACE, "-f", str(values_file), check=False)
    assert proc.returncode != 0, f"{values_file.name} was accepted:\n{proc.stdout[:500]}"
    assert expected in proc.stderr, f"expected {expected!r} in:\n{proc.stderr}"
    # Lint reports it too: schema errors fail the lint; a template's `fail` is only logged
    # there (helm's lint mode), while template and install stop on it.
    lint = helm("lint", "--strict", str(CHART), "-f", str(values_file), check=False)
    assert lint.returncode != 0 or expected in lint.stdout + lint.stderr
