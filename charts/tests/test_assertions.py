"""Assertions on the rendered chart that a platform team relies on (not a snapshot):
autoscaled Deployments carry no `replicas`; the Ingress routes only the public
paths to the API; every container is hardened, probed and bounded; each
ScaledObject watches the queue the OrderPipeline names; the services read with
envFrom exactly what the controller publishes; shutdown fits the grace period.
"""

from urllib.parse import urlparse

import pytest
import yaml

from conftest import CHART, RELEASE, VALUE_SET_IDS, VALUE_SETS, by_kind, load_values, one, pod_specs, render

FULL = f"{RELEASE}-orderflow"
API = f"{FULL}-order-api"
CONSUMER = f"{FULL}-status-consumer"
DELIVERY = f"{FULL}-delivery-service"
CONTROLLER = f"{FULL}-controller"
PUBLIC_PATHS = {"/auth/token", "/orders", "/.well-known/jwks.json"}


def scale_targets(objects):
    """Names of the Deployments an HPA or a ScaledObject scales."""
    return {o["spec"]["scaleTargetRef"]["name"] for o in objects if o["kind"] in ("HorizontalPodAutoscaler", "ScaledObject")}


@pytest.mark.parametrize("values_file", VALUE_SETS, ids=VALUE_SET_IDS)
def test_autoscaled_deployments_render_no_replicas(values_file):
    objects = render(values_file)
    targets = scale_targets(objects)
    deployments = {d["metadata"]["name"]: d for d in by_kind(objects, "Deployment")}
    assert targets <= set(deployments), f"autoscalers target missing Deployments: {targets - set(deployments)}"
    for name, deployment in deployments.items():
        if name in targets:
            assert "replicas" not in deployment["spec"], f"{name} is autoscaled but sets replicas (helm upgrade would reset it)"
        else:
            assert deployment["spec"].get("replicas", 0) >= 1, f"{name} is not autoscaled and sets no replicas"
    # Never two autoscalers on one Deployment (an HPA and KEDA's own would fight).
    scalers = [o["spec"]["scaleTargetRef"]["name"] for o in objects if o["kind"] in ("HorizontalPodAutoscaler", "ScaledObject")]
    assert len(scalers) == len(set(scalers)), f"a Deployment has two autoscalers: {scalers}"


def test_keda_on_scales_consumers_with_scaledobjects_and_api_with_hpa():
    objects = render(None)
    assert {o["metadata"]["name"] for o in by_kind(objects, "ScaledObject")} == {CONSUMER, DELIVERY}
    assert {o["spec"]["scaleTargetRef"]["name"] for o in by_kind(objects, "HorizontalPodAutoscaler")} == {API}


def test_keda_off_renders_cpu_hpas_for_every_deployment_but_the_controller():
    objects = render(next(p for p in VALUE_SETS if p and p.stem == "keda-off-values"))
    assert not [o for o in objects if o["apiVersion"].startswith("keda.sh/")]
    hpas = by_kind(objects, "HorizontalPodAutoscaler")
    assert {h["spec"]["scaleTargetRef"]["name"] for h in hpas} == {API, CONSUMER, DELIVERY}
    for hpa in hpas:
        assert [m["resource"]["name"] for m in hpa["spec"]["metrics"]] == ["cpu"]


def test_scale_to_zero_lets_only_the_status_consumer_reach_zero():
    objects = render(next(p for p in VALUE_SETS if p and p.stem == "scale-to-zero-values"))
    consumer = one(objects, "ScaledObject", CONSUMER)
    assert consumer["spec"]["minReplicaCount"] == 0
    trigger = consumer["spec"]["triggers"][0]["metadata"]
    assert trigger["activationQueueLength"] == "0"
    # In-flight messages count: a replica still handling messages keeps the Deployment awake.
    assert trigger["scaleOnInFlight"] == "true"
    assert one(objects, "ScaledObject", DELIVERY)["spec"]["minReplicaCount"] >= 1


@pytest.mark.parametrize("values_file", VALUE_SETS, ids=VALUE_SET_IDS)
def test_ingress_routes_only_public_paths_to_the_api(values_file):
    objects = render(values_file)
    ingresses = by_kind(objects, "Ingress")
    values = load_values(values_file)
    if not values["ingress"]["enabled"]:
        assert not ingresses
        return
    assert len(ingresses) == 1
    spec = ingresses[0]["spec"]
    api_port = one(objects, "Service", API)["spec"]["ports"][0]["name"]
    routed = {}
    for rule in spec["rules"]:
        assert rule["host"] == values["ingress"]["host"]
        for path in rule["http"]["paths"]:
            backend = path["backend"]["service"]
            assert backend["name"] == API, f"{path['path']} goes to {backend['name']}, not the API"
            assert backend["port"]["name"] == api_port
            routed[path["path"]] = path["pathType"]
    assert set(routed) == PUBLIC_PATHS
    # Prefix only where sub-paths are public (/orders/{id}, /orders/{id}/events); the JWKS path
    # holds a `.`, which ingress-nginx admits only as ImplementationSpecific (test_ingress_nginx.py).
    assert routed == {"/auth/token": "Exact", "/.well-known/jwks.json": "ImplementationSpecific", "/orders": "Prefix"}
    assert "defaultBackend" not in spec
    if values["ingress"]["tls"]["enabled"]:
        assert spec["tls"][0]["hosts"] == [values["ingress"]["host"]]


@pytest.mark.parametrize("values_file", VALUE_SETS, ids=VALUE_SET_IDS)
def test_every_container_is_hardened_and_bounded(values_file):
    objects = render(values_file)
    for owner, spec in pod_specs(objects):
        pod_sc = spec["securityContext"]
        assert pod_sc["runAsNonRoot"] is True and pod_sc["runAsUser"] >= 10000, owner
        assert pod_sc["seccompProfile"]["type"] == "RuntimeDefault", owner
        for container in spec.get("initContainers", []) + spec["containers"]:
            where = f"{owner} container {container['name']}"
            sc = container["securityContext"]
            assert sc["runAsNonRoot"] is True, where
            assert sc["readOnlyRootFilesystem"] is True, where
            assert sc["allowPrivilegeEscalation"] is False, where
            assert sc["capabilities"]["drop"] == ["ALL"] and "add" not in sc["capabilities"], where
            assert sc["seccompProfile"]["type"] == "RuntimeDefault", where
            limits = container["resources"]["limits"]
            requests = container["resources"]["requests"]
            assert {"cpu", "memory"} <= set(limits) and {"cpu", "memory"} <= set(requests), where


@pytest.mark.parametrize("values_file", VALUE_SETS, ids=VALUE_SET_IDS)
def test_every_long_running_container_has_startup_liveness_and_readiness_probes(values_file):
    for deployment in by_kind(render(values_file), "Deployment"):
        for container in deployment["spec"]["template"]["spec"]["containers"]:
            where = f"{deployment['metadata']['name']} container {container['name']}"
            port_names = {p["name"] for p in container["ports"]}
            for probe, path in (("startupProbe", "/healthz"), ("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
                assert container[probe]["httpGet"]["path"] == path, f"{where} {probe}"
                assert container[probe]["httpGet"]["port"] in port_names, f"{where} {probe} port"


@pytest.mark.parametrize("values_file", VALUE_SETS, ids=VALUE_SET_IDS)
def test_shutdown_fits_in_the_grace_period(values_file):
    """SIGTERM comes after the preStop pause; the process then has SHUTDOWN_TIMEOUT to drain.
    Both must fit in terminationGracePeriodSeconds or the kubelet kills mid-drain."""
    for deployment in by_kind(render(values_file), "Deployment"):
        spec = deployment["spec"]["template"]["spec"]
        for container in spec["containers"]:
            env = {e["name"]: e.get("value") for e in container.get("env", [])}
            timeout = int(env["SHUTDOWN_TIMEOUT"].removesuffix("s"))
            pause = container.get("lifecycle", {}).get("preStop", {}).get("sleep", {}).get("seconds", 0)
            assert spec["terminationGracePeriodSeconds"] > pause + timeout, deployment["metadata"]["name"]
            if deployment["metadata"]["name"] != CONTROLLER:
                # Services behind a Service/Ingress pause so endpoints drop them before SIGTERM.
                assert pause >= 1, f"{deployment['metadata']['name']} has no preStop pause"


def queue_name_of(url):
    """KEDA's reading of queueURL: the last segment of /<account>/<name>."""
    parts = urlparse(url).path.split("/")
    assert len(parts) == 3 and parts[2], f"KEDA cannot read a queue name from {url!r}"
    return parts[2]


@pytest.mark.parametrize("values_file", VALUE_SETS, ids=VALUE_SET_IDS)
def test_each_scaledobject_watches_the_queue_its_deployment_consumes(values_file):
    objects = render(values_file)
    values = load_values(values_file)
    queues = values["pipeline"]["spec"]["queues"]
    pipelines = by_kind(objects, "OrderPipeline")
    if pipelines:
        queues = pipelines[0]["spec"]["queues"]
    expected = {DELIVERY: queues["orders"]["name"], CONSUMER: queues["deliveryStatus"]["name"]}
    scaled = by_kind(objects, "ScaledObject")
    if not values["keda"]["enabled"]:
        assert not scaled
        return
    sqs = values["pipeline"]["spec"]["sqs"]
    for obj in scaled:
        target = obj["spec"]["scaleTargetRef"]["name"]
        # KEDA's HPA is keda-hpa-<name>, within 63 characters: never the HPA of keda.enabled=false
        # (named like the Deployment), so switching never adopts one (test_keda_switch.py).
        hpa_name = obj["spec"]["advanced"]["horizontalPodAutoscalerConfig"]["name"]
        assert hpa_name.startswith("keda-hpa-") and len(hpa_name) <= 63 and hpa_name != target
        [trigger] = obj["spec"]["triggers"]
        assert trigger["type"] == "aws-sqs-queue"
        meta = trigger["metadata"]
        assert queue_name_of(meta["queueURL"]) == expected[target], f"{target} scales on the wrong queue"
        assert meta["awsRegion"] == sqs["region"]
        if sqs["endpoint"]:
            # KEDA's view of the endpoint (test_keda_rules.py checks that it resolves from KEDA's namespace).
            assert meta["queueURL"].startswith(meta["awsEndpoint"])
        else:
            assert "awsEndpoint" not in meta and meta["queueURL"].startswith(f"https://sqs.{sqs['region']}.amazonaws.com/")
        for key in ("queueLength", "activationQueueLength", "scaleOnInFlight"):
            assert isinstance(meta[key], str), f"KEDA trigger metadata are strings ({key})"
        auth = one(objects, "TriggerAuthentication", trigger["authenticationRef"]["name"])["spec"]
        secret = sqs["credentialsSecretRef"]["name"]
        if secret:
            assert {(r["parameter"], r["name"], r["key"]) for r in auth["secretTargetRef"]} == {
                ("awsAccessKeyID", secret, "AWS_ACCESS_KEY_ID"),
                ("awsSecretAccessKey", secret, "AWS_SECRET_ACCESS_KEY"),
            }
        else:
            assert auth["podIdentity"]["provider"] == "aws" and "secretTargetRef" not in auth


@pytest.mark.parametrize("values_file", VALUE_SETS, ids=VALUE_SET_IDS)
def test_services_read_what_the_controller_publishes(values_file):
    objects = render(values_file)
    values = load_values(values_file)
    pipelines = by_kind(objects, "OrderPipeline")
    pipeline = pipelines[0]["metadata"]["name"] if pipelines else values["pipeline"]["name"]
    expected_db = {API: "orders-db", CONSUMER: "orders-db", DELIVERY: "delivery-db"}
    creds = values["pipeline"]["spec"]["sqs"]["credentialsSecretRef"]["name"]
    deployments = {d["metadata"]["name"]: d for d in by_kind(objects, "Deployment")}
    for name, db in expected_db.items():
        if name not in deployments:
            continue
        [container] = deployments[name]["spec"]["template"]["spec"]["containers"]
        config_maps = [e["configMapRef"]["name"] for e in container["envFrom"] if "configMapRef" in e]
        secrets = [e["secretRef"]["name"] for e in container["envFrom"] if "secretRef" in e]
        assert config_maps == [f"{pipeline}-config"], name
        assert secrets == [f"{pipeline}-{db}"] + ([creds] if creds else []), name
        env = {e["name"]: e.get("value") for e in container["env"]}
        # The controller migrates and provisions; a service doing it too would race it.
        assert env["DATABASE_MIGRATE"] == "false" and env["SQS_CREATE_QUEUES"] == "false", name
        # Nothing the ConfigMap carries is overridden by a literal (env wins over envFrom).
        assert not {"AWS_REGION", "SQS_ENDPOINT_URL", "ORDERS_QUEUE", "DELIVERY_STATUS_QUEUE", "DATABASE_URL"} & set(env), name
    api_env = {e["name"]: e.get("value") for e in deployments[API]["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert api_env["STATUS_CONSUMER_ENABLED"] == ("false" if CONSUMER in deployments else "true")
    if CONSUMER in deployments:
        assert deployments[CONSUMER]["spec"]["template"]["spec"]["containers"][0]["args"] == ["status-consumer"]


@pytest.mark.parametrize("values_file", VALUE_SETS, ids=VALUE_SET_IDS)
def test_only_the_api_holds_the_signing_key(values_file):
    """The status consumer and the helm test's client registration need no JWT key,
    so they are not given it: the fewer pods hold the signing key, the better."""
    objects = render(values_file)
    for obj in objects:
        if obj.get("kind") not in ("Deployment", "Pod") or obj["metadata"]["name"] == f"{FULL}-order-api":
            continue
        spec = obj["spec"]["template"]["spec"] if obj["kind"] == "Deployment" else obj["spec"]
        for container in spec.get("containers", []) + spec.get("initContainers", []):
            names = {e["name"] for e in container.get("env", [])}
            assert not names & {"JWT_PRIVATE_KEY", "JWT_PRIVATE_KEY_FILE"}, f"{obj['metadata']['name']}/{container['name']}"
        assert all(v["name"] != "jwt" for v in spec.get("volumes", [])), obj["metadata"]["name"]


@pytest.mark.parametrize("values_file", VALUE_SETS, ids=VALUE_SET_IDS)
def test_the_per_address_token_limit_is_off_behind_the_ingress(values_file):
    """Behind the Ingress every client has the controller's address: a per-address limit
    would throttle them all together, so the chart turns it off unless told otherwise."""
    values = load_values(values_file)
    api = one(render(values_file), "Deployment", API)["spec"]["template"]["spec"]
    env = {e["name"]: e.get("value") for e in api["containers"][0]["env"]}
    explicit = values.get("orderApi", {}).get("authRatePerAddress")
    if explicit is not None:
        assert env["AUTH_RATE_PER_ADDRESS"] == str(explicit)
    elif values.get("ingress", {}).get("enabled"):
        assert env["AUTH_RATE_PER_ADDRESS"] == "0"
    else:
        assert "AUTH_RATE_PER_ADDRESS" not in env


@pytest.mark.parametrize("values_file", VALUE_SETS, ids=VALUE_SET_IDS)
def test_network_policies_deny_by_default_and_open_only_what_is_needed(values_file):
    objects = render(values_file)
    values = load_values(values_file)
    if not values["networkPolicy"]["enabled"]:
        return
    policies = {p["metadata"]["name"]: p["spec"] for p in by_kind(objects, "NetworkPolicy")}
    deny = policies[f"{FULL}-default-deny"]
    assert set(deny["policyTypes"]) == {"Ingress", "Egress"} and "ingress" not in deny and "egress" not in deny
    # Every pod the chart runs is selected by the default deny and by a policy of its own.
    pods = [(d["metadata"]["name"], d["spec"]["template"]["metadata"]["labels"]) for d in by_kind(objects, "Deployment")]
    pods += [(p["metadata"]["name"], p["metadata"]["labels"]) for p in by_kind(objects, "Pod")]
    for name, labels in pods:
        assert deny["podSelector"]["matchLabels"].items() <= labels.items(), f"{name} escapes the default deny"
        own = [p for n, p in policies.items() if n != f"{FULL}-default-deny" and
               p["podSelector"]["matchLabels"].items() <= labels.items()]
        assert own, f"no NetworkPolicy opens {name}"
    egress_ports = lambda spec: {port["port"] for rule in spec["egress"] for port in rule.get("ports", [])}
    api_ports = egress_ports(policies[API])
    redis = values["redis"]["existingSecret"]
    redis_port = redis["port"] if redis["name"] else urlparse(values["redis"]["url"]).port or 6379
    assert {53, values["pipeline"]["spec"]["databases"]["server"]["port"], redis_port} <= api_ports
    assert redis_port not in egress_ports(policies[DELIVERY]), "only the API talks to Redis"
    if CONTROLLER in policies:
        kube_ports = set(values["networkPolicy"]["egress"]["kubeApiServerPorts"])
        assert kube_ports <= egress_ports(policies[CONTROLLER])
        if values["pipeline"]["spec"]["sqs"]["endpoint"]:  # then SQS is not on 443: only the controller reaches the API server
            assert not kube_ports & egress_ports(policies[API])
    # Prometheus reaches each metrics port; only the API is reachable from the ingress controller.
    api_from = [peer for rule in policies[API]["ingress"] for peer in rule["from"]]
    controller_ns = values["networkPolicy"]["ingressController"]["namespaceSelector"]
    assert any(peer.get("namespaceSelector") == controller_ns for peer in api_from)
    for name in (DELIVERY, CONSUMER, CONTROLLER):
        if name in policies:
            peers = [peer for rule in policies[name]["ingress"] for peer in rule["from"]]
            assert all(peer.get("namespaceSelector") != controller_ns for peer in peers), name


@pytest.mark.parametrize("values_file", VALUE_SETS, ids=VALUE_SET_IDS)
def test_every_deployment_has_a_pdb_and_spreads(values_file):
    objects = render(values_file)
    pdb_selectors = [p["spec"]["selector"]["matchLabels"] for p in by_kind(objects, "PodDisruptionBudget")]
    for deployment in by_kind(objects, "Deployment"):
        selector = deployment["spec"]["selector"]["matchLabels"]
        assert selector in pdb_selectors, f"{deployment['metadata']['name']} has no PodDisruptionBudget"
        spread = deployment["spec"]["template"]["spec"]["topologySpreadConstraints"]
        assert {c["topologyKey"] for c in spread} == {"topology.kubernetes.io/zone", "kubernetes.io/hostname"}
        assert all(c["labelSelector"]["matchLabels"] == selector for c in spread)


@pytest.mark.parametrize("values_file", VALUE_SETS, ids=VALUE_SET_IDS)
def test_controller_rbac_is_namespaced_and_least_privilege(values_file):
    objects = render(values_file)
    if not load_values(values_file)["controller"]["enabled"]:
        assert not by_kind(objects, "Role")
        return
    # Nothing cluster-wide for the controller: no ClusterRoleBinding at all, and the only
    # ClusterRoles are the aggregated ones for people, limited to OrderPipelines.
    assert not by_kind(objects, "ClusterRoleBinding")
    for cluster_role in by_kind(objects, "ClusterRole"):
        labels = cluster_role["metadata"]["labels"]
        assert any(k.startswith("rbac.authorization.k8s.io/aggregate-to-") for k in labels), cluster_role["metadata"]["name"]
        assert {r for rule in cluster_role["rules"] for r in rule["resources"]} <= {"orderpipelines", "orderpipelines/status"}
    role = one(objects, "Role", CONTROLLER)
    granted = {(group, resource): set(rule["verbs"]) for rule in role["rules"]
               for group in rule["apiGroups"] for resource in rule["resources"]}
    assert all("*" not in verbs for verbs in granted.values()) and ("*", "*") not in granted
    assert granted[("orderflow.dev", "orderpipelines")] >= {"list", "watch", "patch"}
    assert granted[("orderflow.dev", "orderpipelines/status")] >= {"patch"}
    assert granted[("orderflow.dev", "orderpipelines/finalizers")] == {"update"}
    assert "delete" not in granted[("orderflow.dev", "orderpipelines")], "only people and the uninstall hook delete it"
    assert granted[("coordination.k8s.io", "leases")] >= {"get", "create", "patch"}
    binding = one(objects, "RoleBinding", CONTROLLER)
    deployment = one(objects, "Deployment", CONTROLLER)["spec"]["template"]["spec"]
    assert binding["subjects"][0]["name"] == deployment["serviceAccountName"]
    # Only the controller's pods get an API token.
    for owner, spec in pod_specs(objects):
        if owner != f"Deployment/{CONTROLLER}":
            assert spec["automountServiceAccountToken"] is False, owner


@pytest.mark.parametrize("values_file", VALUE_SETS, ids=VALUE_SET_IDS)
def test_images_default_to_the_chart_app_version(values_file):
    values = load_values(values_file)
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    tag = values["image"]["tag"] or chart["appVersion"]
    for owner, spec in pod_specs(render(values_file)):
        for container in spec.get("initContainers", []) + spec["containers"]:
            if container["image"].startswith(values["image"]["registry"] + "/"):
                assert container["image"].endswith(f":{tag}"), f"{owner}: {container['image']}"


def test_irsa_value_set_annotates_every_service_account():
    objects = render(next(p for p in VALUE_SETS if p and p.stem == "aws-irsa-values"))
    # The uninstall hook's account talks only to the Kubernetes API: no AWS role.
    accounts = [a for a in by_kind(objects, "ServiceAccount") if "helm.sh/hook" not in a["metadata"].get("annotations", {})]
    assert len(accounts) == 4
    for account in accounts:
        assert account["metadata"]["annotations"]["eks.amazonaws.com/role-arn"].startswith("arn:aws:iam::")
    pipeline = by_kind(objects, "OrderPipeline")[0]["spec"]["sqs"]
    assert "endpoint" not in pipeline and "credentialsSecretRef" not in pipeline


@pytest.mark.parametrize("values_file", VALUE_SETS, ids=VALUE_SET_IDS)
def test_most_replicas_fit_the_postgresql_connection_budget(values_file):
    """At full scale (each autoscaler at its maximum) the pools fit the budget the values declare."""
    objects = render(values_file)
    budget = load_values(values_file)["common"]["databaseConnectionBudget"]
    most = {}
    for scaler in objects:
        if scaler["kind"] == "HorizontalPodAutoscaler":
            most[scaler["spec"]["scaleTargetRef"]["name"]] = scaler["spec"]["maxReplicas"]
        elif scaler["kind"] == "ScaledObject":
            most[scaler["spec"]["scaleTargetRef"]["name"]] = scaler["spec"]["maxReplicaCount"]
    total = 0
    for deployment in by_kind(objects, "Deployment"):
        env = {e["name"]: e.get("value") for e in deployment["spec"]["template"]["spec"]["containers"][0].get("env", [])}
        if "DATABASE_MAX_CONNECTIONS" in env:
            replicas = most.get(deployment["metadata"]["name"], deployment["spec"].get("replicas"))
            total += replicas * int(env["DATABASE_MAX_CONNECTIONS"])
    assert 0 < total <= budget, f"{total} connections at full scale, budget {budget}"
