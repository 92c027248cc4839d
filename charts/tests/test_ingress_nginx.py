"""The Ingress against ingress-nginx 1.12 (the version k8s/kind/up.sh pins): its
admission webhook's path-type rule, applied to every path of every Ingress the chart
renders; how the controller then matches requests (only the order API's public routes
reach it); and the NOTES warning when the Ingress names no IngressClass.

Sources of the rules encoded here:
- strict-validate-path-type, on by default since 1.12:
  https://kubernetes.github.io/ingress-nginx/user-guide/nginx-configuration/configmap/#strict-validate-path-type
  and internal/ingress/inspector/inspector.go (ValidatePathType) with rules.go
  (validPathType) in https://github.com/kubernetes/ingress-nginx: paths of any type
  but ImplementationSpecific must match `(?i)^/[[:alnum:]\\_\\-/]*$` in 1.12 (no `.`;
  kubernetes/ingress-nginx#13798 adds `.` in later releases, the chart meets 1.12's).
- location building: internal/ingress/controller/template/template.go (buildLocation):
  Exact is `location = <path>`, ImplementationSpecific a plain nginx prefix location,
  and any use-regex or rewrite-target annotation on the host turns every location into
  `~* "^<path>"`; Prefix matches path elements (Kubernetes Ingress API,
  https://kubernetes.io/docs/concepts/services-networking/ingress/#path-types).
- a class-less Ingress: https://kubernetes.io/docs/concepts/services-networking/ingress/#default-ingress-class
"""

import re
from pathlib import Path

import pytest
import yaml

from conftest import ROOT, VALUE_SET_IDS, VALUE_SETS, by_kind, render
from notes import render_notes

# validPathType of ingress-nginx 1.12 (rules.go); `[[:alnum:]]` under (?i) is A-Za-z0-9.
STRICT_PATH = re.compile(r"^/[A-Za-z0-9_\-/]*$", re.IGNORECASE)
REGEX_ANNOTATIONS = ("nginx.ingress.kubernetes.io/use-regex", "nginx.ingress.kubernetes.io/rewrite-target")
PUBLIC_ROUTES = {"/auth/token", "/orders", "/orders/{id}", "/orders/{id}/events", "/.well-known/jwks.json"}
AN_ID = "0190b5a4-7c2e-7a11-8f00-000000000001"


def strict_path_errors(ingress: dict) -> list[str]:
    """ingress-nginx's ValidatePathType: the paths its webhook refuses, in its words."""
    errors = []
    for rule in ingress["spec"].get("rules", []):
        for path in rule.get("http", {}).get("paths", []):
            if not path.get("path") or path.get("pathType") == "ImplementationSpecific":
                continue
            if not STRICT_PATH.match(path["path"]):
                errors.append(f"path {path['path']} cannot be used with pathType {path.get('pathType')}")
    return errors


def ingress_renders():
    """Every value set as it is and with the Ingress switched on."""
    for values_file, name in zip(VALUE_SETS, VALUE_SET_IDS):
        yield pytest.param(values_file, (), id=name)
        yield pytest.param(values_file, ("ingress.enabled=true",), id=f"{name}+ingress")


@pytest.mark.parametrize("values_file,extra", ingress_renders())
def test_ingress_nginx_admits_every_rendered_path(values_file, extra):
    ingresses = by_kind(render(values_file, extra), "Ingress")
    if extra:
        assert ingresses, "ingress.enabled=true rendered no Ingress"
    for ingress in ingresses:
        assert not strict_path_errors(ingress), f"ingress-nginx's webhook refuses {ingress['metadata']['name']}"


def test_the_strict_rule_refuses_what_the_webhook_refuses():
    """The encoded rule is not vacuous: the chart's old JWKS path (Exact) and a regex fail it."""
    def ingress(path, path_type):
        return {"spec": {"rules": [{"http": {"paths": [{"path": path, "pathType": path_type}]}}]}}
    assert strict_path_errors(ingress("/.well-known/jwks.json", "Exact"))
    assert strict_path_errors(ingress("/orders(/|$)(.*)", "Prefix"))
    assert not strict_path_errors(ingress("/.well-known/jwks.json", "ImplementationSpecific"))
    assert not strict_path_errors(ingress("/orders/some_thing-1", "Prefix"))


def location_matches(path: dict, request: str, regex: bool) -> bool:
    """Whether ingress-nginx's location for one Ingress path takes a request path."""
    if regex:
        return re.match("^" + path["path"], request, re.IGNORECASE) is not None
    if path["pathType"] == "Exact":
        return request == path["path"]
    if path["pathType"] == "Prefix":
        want = [p for p in path["path"].split("/") if p]
        return [p for p in request.split("/") if p][: len(want)] == want
    return request.startswith(path["path"])  # ImplementationSpecific: an nginx prefix location


def api_routes() -> set[str]:
    """Every route the order-service serves: its OpenAPI path attributes and /openapi.json."""
    sources = [*(ROOT / "services" / "order-service" / "src").rglob("*.rs"), *(ROOT / "crates" / "web" / "src").rglob("*.rs")]
    routes = {m for f in sources for m in re.findall(r'path = "(/[^"]*)"', f.read_text())}
    assert PUBLIC_ROUTES <= routes and {"/metrics", "/healthz", "/readyz"} <= routes, routes
    return routes | {"/openapi.json"}


@pytest.mark.parametrize("regex", [False, True], ids=["plain", "use-regex"])
def test_only_public_routes_reach_the_api(regex, tmp_path):
    annotations = {"nginx.ingress.kubernetes.io/use-regex": "true"} if regex else {}
    values = tmp_path / "values.yaml"
    values.write_text(yaml.safe_dump({"ingress": {"enabled": True, "annotations": annotations}}))
    [ingress] = by_kind(render(values), "Ingress")
    annotations = ingress["metadata"].get("annotations", {})
    host_regex = any(a in annotations for a in REGEX_ANNOTATIONS)
    assert host_regex == regex
    paths = [p for rule in ingress["spec"]["rules"] for p in rule["http"]["paths"]]
    for route in api_routes():
        request = route.replace("{id}", AN_ID)
        routed = any(location_matches(p, request, host_regex) for p in paths)
        assert routed == (route in PUBLIC_ROUTES), f"{request}: routed={routed}"
    if not regex:
        # Exact and Prefix keep look-alikes out; only the JWKS prefix takes longer paths (the API's 404).
        assert not any(location_matches(p, r, False) for p in paths for r in ("/auth/tokens", "/ordersx"))

def test_notes_warn_when_the_ingress_names_no_class():
    warning = "ingress.className is empty"
    assert warning in render_notes(None, ("ingress.enabled=true",))
    assert warning not in render_notes(None, ("ingress.enabled=true", "ingress.className=nginx"))
    assert warning not in render_notes(None)


def test_readme_quickstart_sets_an_ingress_class():
    """The README's install command enables the Ingress; it must name a class too."""
    readme = (ROOT / "README.md").read_text()
    install = re.search(r"helm install orderflow charts/orderflow[^\n]*(\\\n[^\n]*)*", readme)
    assert install, "no helm install command in the README"
    if "ingress.enabled=true" in install.group(0):
        assert "ingress.className=" in install.group(0), install.group(0)
