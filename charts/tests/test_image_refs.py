"""Every image a manifest pulls is one that exists: the project's own images are the
ones the Dockerfile's header documents building (`-t ghcr.io/orderflow/<BIN>:<chart
appVersion>`), and every other image is pinned (an explicit tag that is not `latest`,
or a digest), in each manifest under k8s/ and in the chart rendered with the default
values and every ci/ value file (hooks and test pods included). A value file that sets
image.tag or image.digest gets that tag or digest on the same repositories.
An image reference is [registry/]path[:tag][@digest] (the distribution reference
grammar, https://github.com/distribution/reference/blob/main/reference.go).
"""

import re

import pytest
import yaml

from conftest import CHART, ROOT, VALUE_SET_IDS, VALUE_SETS, load_values, render

APP_VERSION = str(yaml.safe_load((CHART / "Chart.yaml").read_text())["appVersion"])


def documented_tags() -> dict[str, str]:
    """BIN -> the tag the Dockerfile's header builds it as."""
    header = []
    for line in (ROOT / "Dockerfile").read_text().splitlines():
        if not line.startswith("#"):
            break
        header.append(line)
    return dict(re.findall(r"docker build --build-arg BIN=(\S+)\s+-t (\S+) \.", "\n".join(header)))


def split_ref(ref: str) -> tuple[str, str | None, str | None]:
    """(repository, tag, digest) of an image reference."""
    name, _, digest = ref.partition("@")
    last = name.rsplit("/", 1)[-1]
    if ":" in last:
        name, tag = name.rsplit(":", 1)
    else:
        tag = None
    return name, tag, digest or None


def problem(ref: str, own: set[str]) -> str | None:
    """Why `ref` is not an image that exists, or None. `own` is the set of refs the
    project's images may have here."""
    repository, tag, digest = split_ref(ref)
    ours = repository.rsplit("/", 1)[-1] in BINARIES or "orderflow" in repository
    if ours:
        return None if ref in own else f"{ref}: not a documented image (one of {sorted(own)})"
    if digest and re.fullmatch(r"sha256:[0-9a-f]{64}", digest):
        return None
    if tag and tag != "latest":
        return None
    return f"{ref}: third-party image without a pinned tag or digest"


def image_refs(node) -> list[str]:
    """Every string value of an `image` key, at any depth (containers, init containers,
    kind nodes)."""
    if isinstance(node, dict):
        found = [node["image"]] if isinstance(node.get("image"), str) else []
        return found + [ref for value in node.values() for ref in image_refs(value)]
    if isinstance(node, list):
        return [ref for item in node for ref in image_refs(item)]
    return []


TAGS = documented_tags()
BINARIES = set(TAGS)


def test_the_dockerfile_documents_a_tag_per_binary_at_the_charts_app_version():
    assert BINARIES == {"order-service", "delivery-service", "orderflow-controller", "orderflow"}
    for binary, tag in TAGS.items():
        assert tag == f"ghcr.io/orderflow/{binary}:{APP_VERSION}", tag


def test_the_check_refuses_what_a_cluster_could_not_pull():
    own = set(TAGS.values())
    assert problem("orderflow/orderflow-controller:0.1.0", own)  # the old k8s/controller image
    assert problem("ghcr.io/orderflow/order-service:9.9.9", own)
    assert problem("redis", own) and problem("redis:latest", own)
    assert problem("ghcr.io/orderflow/orderflow-controller:" + APP_VERSION, own) is None
    assert problem("redis:7", own) is None
    assert problem("docker.io/library/redis@sha256:" + "a" * 64, own) is None
    assert problem("localhost:5001/redis", own), "a registry port is not a tag"


def test_every_image_under_k8s_exists():
    manifests = sorted(ROOT.joinpath("k8s").rglob("*.yaml"))
    refs = [(path, ref) for path in manifests for doc in yaml.safe_load_all(path.read_text()) if doc
            for ref in image_refs(doc)]
    assert any(path.name == "deployment.yaml" for path, _ in refs), "k8s/controller runs an image"
    own = set(TAGS.values())
    problems = [f"{path.relative_to(ROOT)}: {p}" for path, ref in refs if (p := problem(ref, own))]
    assert not problems, "\n".join(problems)


def own_refs(values_file) -> set[str]:
    """The refs the chart may render for the project's images with these values."""
    image = load_values(values_file)["image"]
    refs = set()
    for binary, documented in TAGS.items():
        repository, tag, _ = split_ref(documented)
        assert repository.rsplit("/", 1)[0] == image["registry"], f"image.registry is not {repository}'s registry"
        if image.get("digest"):
            refs.add(f"{repository}@{image['digest']}")
        else:
            refs.add(f"{repository}:{image.get('tag') or tag}")
    return refs


@pytest.mark.parametrize("values_file", VALUE_SETS, ids=VALUE_SET_IDS)
def test_every_image_the_chart_renders_exists(values_file):
    refs = image_refs(render(values_file))
    own = own_refs(values_file)
    assert set(refs) & own, "the chart renders the project's images"
    problems = [p for ref in sorted(set(refs)) if (p := problem(ref, own))]
    assert not problems, "\n".join(problems)
