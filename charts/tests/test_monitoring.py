"""Monitoring as shipped: the alerts an operator acts on, each linked to its runbook
entry; the Grafana dashboard as a sidecar-labelled ConfigMap; the ServiceMonitor
finding every metrics Service; and every query naming only metrics the services
export (docs/OBSERVABILITY.md "Metrics" table) or kube-state-metrics provides; and the alerts as
Prometheus evaluates them: `promtool check rules` on every value set, `promtool test
rules` (charts/tests/alerts/) showing each alert fire on a series and stay quiet on
another, with the default values and with tuned ones.
"""

import json
import re

import pytest
import yaml

from conftest import CHART, RELEASE, ROOT, VALUE_SET_IDS, VALUE_SETS, by_kind, helm, load_values, one, render
from promrules import ALERT_TESTS, alert_cases, promtool, rule_groups, rules_file, unit_test_file

TLS_SET = next(p for p in VALUE_SETS if p and p.stem == "ingress-tls-values")
# Alert -> docs/RUNBOOK.md anchor (the runbook entries are headings "Runbook: ...").
RUNBOOKS = {
    "OrderflowDeadLetterQueueNotEmpty": "runbook-dead-letter-queue-not-empty",
    "OrderflowOutboxBacklogGrowing": "runbook-outbox-backlog-growing",
    "OrderflowOutboxRowsParked": "runbook-parked-outbox-rows",
    "OrderflowShipmentStepsFailing": "runbook-stuck-shipments",
    "OrderflowConsumerLagAboveTarget": "runbook-consumer-lag-above-target",
    "OrderflowHttp5xxRate": "runbook-http-5xx-rate",
    "OrderflowDependencyDown": "runbook-dependency-down",
}
KUBE_STATE_METRICS = {"kube_deployment_status_replicas_available", "kube_deployment_spec_replicas"}


def exported_metrics():
    """Metric names in the first cells of docs/OBSERVABILITY.md's metrics table ("**Metrics.**")."""
    section = (ROOT / "docs" / "OBSERVABILITY.md").read_text().split("**Metrics.**", 1)[1].splitlines()
    start = next(i for i, line in enumerate(section) if line.startswith("|"))
    names = set()
    for line in section[start:]:
        if not line.startswith("|"):
            break
        names |= set(re.findall(r"`([a-z_]+)(?:\{[^}]*\})?`", line.split("|")[1]))
    assert {"http_server_requests_total", "sqs_queue_messages", "outbox_backlog", "dependency_up"} <= names
    return names


def metrics_in(expr):
    names = set()
    for name in re.findall(r"\b([a-z_][a-z0-9_]*)\s*\{", expr):
        names.add(re.sub(r"_(bucket|sum|count)$", "", name) if name.endswith(("_bucket", "_sum", "_count")) else name)
    return names


def rules():
    rule = one(render(TLS_SET), "PrometheusRule", "shop-orderflow")
    return [r for group in rule["spec"]["groups"] for r in group["rules"]]


def test_alerts_are_the_ones_an_operator_acts_on_and_link_their_runbook():
    values = load_values(TLS_SET)
    alerts = {r["alert"]: r for r in rules()}
    assert set(alerts) == set(RUNBOOKS)
    for name, rule in alerts.items():
        assert rule["labels"]["severity"] in {"warning", "critical"}, name
        assert rule["annotations"]["runbook_url"] == f"{values['metrics']['prometheusRule']['runbookUrl']}#{RUNBOOKS[name]}"
        assert rule["annotations"]["summary"] and rule["for"], name
        assert 'namespace="orderflow"' in rule["expr"], f"{name} must only see this release's namespace"


def github_anchor(heading):
    """The anchor GitHub gives a Markdown heading: lower case, punctuation dropped, spaces to dashes."""
    return re.sub(r"[^a-z0-9 _-]", "", heading.strip().lower()).replace(" ", "-")


def test_every_runbook_link_lands_on_an_entry_of_the_runbook():
    values = load_values(None)
    assert values["metrics"]["prometheusRule"]["runbookUrl"].endswith("/docs/RUNBOOK.md")
    headings = re.findall(r"^#+ (.+)$", (ROOT / "docs" / "RUNBOOK.md").read_text(), re.M)
    anchors = {github_anchor(h) for h in headings}
    assert set(RUNBOOKS.values()) <= anchors, f"runbook entries missing: {sorted(set(RUNBOOKS.values()) - anchors)}"


def test_queue_alerts_name_the_pipelines_queues():
    spec = by_kind(render(TLS_SET), "OrderPipeline")[0]["spec"]["queues"]
    alerts = {r["alert"]: r["expr"] for r in rules()}

    def queues_matched(expr):
        [pattern] = set(re.findall(r"queue=~`([^`]*)`", expr))
        return {alt.replace("\\.", ".") for alt in pattern.split("|")}

    assert queues_matched(alerts["OrderflowDeadLetterQueueNotEmpty"]) == {
        spec["orders"]["deadLetter"]["name"], spec["deliveryStatus"]["deadLetter"]["name"]}
    assert queues_matched(alerts["OrderflowConsumerLagAboveTarget"]) == {
        spec["orders"]["name"], spec["deliveryStatus"]["name"]}


def test_alerts_and_dashboard_query_only_exported_metrics():
    exported = exported_metrics() | KUBE_STATE_METRICS
    used = set()
    for rule in rules():
        used |= metrics_in(rule["expr"])
    dashboard = json.loads(one(render(None), "ConfigMap", "shop-orderflow-dashboard")["data"]["orderflow.json"])
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            used |= metrics_in(target["expr"])
    assert used, "no metric found in the queries"
    assert used <= exported, f"queries name metrics nobody exports: {sorted(used - exported)}"


def test_dashboard_is_loaded_by_the_grafana_sidecar_and_covers_the_production_views():
    config_map = one(render(None), "ConfigMap", "shop-orderflow-dashboard")
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    dashboard = json.loads(config_map["data"]["orderflow.json"])
    assert dashboard["uid"] and dashboard["title"] == "orderflow"
    exprs = " ".join(t["expr"] for p in dashboard["panels"] for t in p.get("targets", []))
    titles = {p["title"] for p in dashboard["panels"]}
    assert {"Request rate", "Errors", "Latency p50 / p99"} <= titles  # per route
    assert {"Queue depth", "Queue age (estimated wait)"} <= titles  # per queue
    assert {"Outbox backlog", "Placed -> delivered", "Shipment step lag p99", "Pods per Deployment"} <= titles
    assert "by (job, method, route)" in exprs and "by (queue, state)" in exprs
    variables = {v["name"] for v in dashboard["templating"]["list"]}
    assert {"datasource", "namespace"} <= variables


def test_service_monitor_selects_every_metrics_service():
    objects = render(TLS_SET)
    monitor = one(objects, "ServiceMonitor", "shop-orderflow")
    selector = monitor["spec"]["selector"]["matchLabels"]
    services = [s for s in by_kind(objects, "Service") if selector.items() <= s["metadata"]["labels"].items()]
    assert len(services) == 4
    ports = {p["name"] for s in services for p in s["spec"]["ports"]}
    assert [e["port"] for e in monitor["spec"]["endpoints"]] == ["http"] and ports == {"http"}
    assert monitor["spec"]["endpoints"][0]["path"] == "/metrics"


@pytest.mark.parametrize("enabled", [True, False])
def test_scrape_annotations_follow_the_switch(enabled):
    objects = render(None, (f"metrics.podAnnotations={str(enabled).lower()}",))
    for deployment in by_kind(objects, "Deployment"):
        annotations = deployment["spec"]["template"]["metadata"].get("annotations", {})
        port = deployment["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"]
        if enabled:
            assert annotations["prometheus.io/scrape"] == "true"
            assert annotations["prometheus.io/port"] == str(port)
        else:
            assert "prometheus.io/scrape" not in annotations


RULES_ON = ("metrics.prometheusRule.enabled=true",)
# alerts/<test file> -> (values file, namespace) it is written for.
TUNED_VALUES = ALERT_TESTS / "tuned-values.yaml"
UNIT_TESTS = {
    "defaults.test.yaml": (None, "orderflow"),
    "tuned.test.yaml": (TUNED_VALUES, "shop-prod"),
}


def render_rules(values_file, namespace):
    """The chart's objects with the PrometheusRule on, in `namespace`."""
    args = ["-f", str(values_file)] if values_file else []
    text = helm("template", RELEASE, str(CHART), "--namespace", namespace, "--set", RULES_ON[0], *args).stdout
    return [doc for doc in yaml.safe_load_all(text) if doc]


@pytest.mark.parametrize("values_file", [*VALUE_SETS, TUNED_VALUES], ids=[*VALUE_SET_IDS, "tuned"])
def test_promtool_accepts_the_rules_of_every_value_set(values_file, tmp_path):
    proc = promtool("check", "rules", rules_file(render(values_file, RULES_ON), tmp_path))
    assert proc.returncode == 0 and "SUCCESS: 7 rules found" in proc.stdout, proc.stdout + proc.stderr


@pytest.mark.parametrize("test_file", sorted(UNIT_TESTS))
def test_alerts_fire_and_stay_quiet_as_their_unit_tests_expect(test_file, tmp_path):
    values_file, namespace = UNIT_TESTS[test_file]
    rules_file(render_rules(values_file, namespace), tmp_path)
    proc = promtool("test", "rules", unit_test_file(test_file, tmp_path))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS" in proc.stdout


def test_every_alert_has_a_firing_and_a_quiet_case():
    alerts = {r["alert"] for g in rule_groups(render_rules(None, "orderflow")) for r in g["rules"]}
    cases = alert_cases("defaults.test.yaml")
    assert set(cases) == alerts == set(RUNBOOKS)
    for name, counts in cases.items():
        assert counts["fires"] >= 1 and counts["quiet"] >= 1, f"{name}: {counts}"


def test_the_tuned_values_change_the_rules():
    default = {r["alert"]: r for g in rule_groups(render_rules(None, "orderflow")) for r in g["rules"]}
    tuned = {r["alert"]: r for g in rule_groups(render_rules(TUNED_VALUES, "shop-prod")) for r in g["rules"]}
    changed = {name for name in default if default[name] != tuned[name]}
    assert changed == set(RUNBOOKS), "every alert reads the namespace and the runbook base"
    assert set(alert_cases("tuned.test.yaml")) >= {
        "OrderflowDeadLetterQueueNotEmpty", "OrderflowOutboxBacklogGrowing",
        "OrderflowConsumerLagAboveTarget", "OrderflowHttp5xxRate"}, "each tuned threshold or queue name is tested"


def test_promtool_check_refuses_a_broken_rule(tmp_path):
    bad = tmp_path / "rules.yaml"
    bad.write_text("groups:\n  - name: bad\n    rules:\n      - alert: Broken\n        expr: rate(x[5m] > 0\n")
    proc = promtool("check", "rules", bad)
    assert proc.returncode != 0 and "FAILED" in proc.stdout + proc.stderr


def test_promtool_test_fails_when_an_alert_does_not_do_what_its_test_expects(tmp_path):
    rules_file(render_rules(None, "orderflow"), tmp_path)
    wrong = tmp_path / "wrong.test.yaml"
    wrong.write_text("""rule_files: [rules.yaml]
tests:
  - interval: 1m
    input_series:
      - series: 'outbox_parked_rows{namespace="orderflow", job="shop-orderflow-delivery-service"}'
        values: '0x10'
    alert_rule_test:
      - eval_time: 10m
        alertname: OrderflowOutboxRowsParked
        exp_alerts: [{exp_labels: {severity: warning, job: shop-orderflow-delivery-service}}]
""")
    proc = promtool("test", "rules", wrong)
    assert proc.returncode != 0 and "FAILED" in proc.stdout + proc.stderr
