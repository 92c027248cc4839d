"""pgbouncer.enabled: a PgBouncer Deployment in transaction pooling mode between the
services' pools and PostgreSQL. The services keep DATABASE_URL (the controller's
Secret, direct: LISTEN) and get DATABASE_POOLER for their pools; PgBouncer reads the
roles' passwords from the same Secrets; its objects validate strictly, pass checkov,
are hardened, and the connection budget counts PgBouncer's server pools instead of
the services' pools. Also runs the start script against sample Secrets.
"""

import configparser
import os
import subprocess
import sys
from pathlib import Path

import kubernetes_validate
import pytest

from conftest import CHART, by_kind, helm, one, render, render_text
from test_policy import checkov

ON = ("pgbouncer.enabled=true",)
FULL = "shop-orderflow"
PGB = f"{FULL}-pgbouncer"
SERVICES = [f"{FULL}-order-api", f"{FULL}-status-consumer", f"{FULL}-delivery-service"]


def env_of(deployment):
    return {e["name"]: e.get("value") for e in deployment["spec"]["template"]["spec"]["containers"][0].get("env", [])}


def ini(objects):
    parser = configparser.ConfigParser(interpolation=None, delimiters=("=",))
    parser.optionxform = str
    parser.read_string(one(objects, "ConfigMap", PGB)["data"]["pgbouncer.ini"])
    return parser


def test_off_by_default_and_services_connect_directly():
    objects = render(None)
    assert not [o for o in objects if o["metadata"]["name"] == PGB]
    for name in SERVICES:
        assert "DATABASE_POOLER" not in env_of(one(objects, "Deployment", name))


def test_services_pools_go_through_pgbouncer_and_keep_the_direct_url():
    objects = render(None, ON)
    for name in SERVICES:
        deployment = one(objects, "Deployment", name)
        assert env_of(deployment)["DATABASE_POOLER"] == f"{PGB}:6432", name
        # PgBouncer serves plain TCP: the pools' hop to it must not demand TLS
        # (crates/database: DATABASE_POOLER_SSLMODE replaces the URL's sslmode there).
        assert env_of(deployment)["DATABASE_POOLER_SSLMODE"] == "prefer", name
        # DATABASE_URL still comes from the controller's Secret: the direct connection.
        envfrom = deployment["spec"]["template"]["spec"]["containers"][0]["envFrom"]
        assert any(e.get("secretRef", {}).get("name", "").endswith("-db") for e in envfrom), name
    service = one(objects, "Service", PGB)
    assert service["spec"]["ports"] == [{"name": "postgres", "port": 6432, "targetPort": "postgres", "protocol": "TCP"}]


def test_pgbouncer_pools_transactions_and_never_keeps_prepared_statements():
    config = ini(render(None, ON))
    bouncer = config["pgbouncer"]
    assert bouncer["pool_mode"] == "transaction"
    assert bouncer["server_reset_query"] == "DEALLOCATE ALL" and bouncer["server_reset_query_always"] == "1"
    assert set(bouncer["ignore_startup_parameters"].split(",")) >= {"extra_float_digits", "options"}
    assert bouncer["auth_type"] == "scram-sha-256" and bouncer["auth_file"] == "/run/pgbouncer/userlist.txt"
    assert dict(config["databases"]) == {
        "orderflow_orders": "host=postgres port=5432 dbname=orderflow_orders",
        "orderflow_delivery": "host=postgres port=5432 dbname=orderflow_delivery",
    }


def test_passwords_come_from_the_controllers_secrets_into_memory():
    objects = render(None, ON)
    spec = one(objects, "Deployment", PGB)["spec"]["template"]["spec"]
    [container] = spec["containers"]
    refs = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in container["env"]}
    assert refs == {
        "ORDERS_DATABASE_URL": {"name": f"{FULL}-orders-db", "key": "DATABASE_URL"},
        "DELIVERY_DATABASE_URL": {"name": f"{FULL}-delivery-db", "key": "DATABASE_URL"},
    }
    run = next(v for v in spec["volumes"] if v["name"] == "run")
    assert run["emptyDir"]["medium"] == "Memory"
    sc = container["securityContext"]
    assert sc["readOnlyRootFilesystem"] and sc["runAsNonRoot"] and sc["capabilities"]["drop"] == ["ALL"]
    assert {"cpu", "memory"} <= set(container["resources"]["limits"])
    assert all(container[p]["tcpSocket"]["port"] == "postgres" for p in ("startupProbe", "livenessProbe", "readinessProbe"))
    assert spec["automountServiceAccountToken"] is False
    pdb = [p for p in by_kind(objects, "PodDisruptionBudget") if p["metadata"]["name"] == PGB]
    assert pdb and pdb[0]["spec"]["selector"]["matchLabels"] == one(objects, "Deployment", PGB)["spec"]["selector"]["matchLabels"]


def test_start_script_writes_the_user_list(tmp_path):
    """files/pgbouncer.sh with sample Secrets, a stub pgbouncer on PATH and /run redirected."""
    script = (CHART / "files" / "pgbouncer.sh").read_text().replace("/run/pgbouncer", str(tmp_path))
    (tmp_path / "start.sh").write_text(script)
    stub = tmp_path / "bin"
    stub.mkdir()
    (stub / "pgbouncer").write_text("#!/bin/sh\necho started \"$@\"\n")
    (stub / "pgbouncer").chmod(0o755)
    env = {
        "PATH": f"{stub}:{os.environ['PATH']}",
        "ORDERS_DATABASE_URL": "postgres://orderflow_orders:Abc123@postgres:5432/orderflow_orders?sslmode=prefer",
        "DELIVERY_DATABASE_URL": "postgres://orderflow_delivery:p%40ss%22w@postgres:5432/orderflow_delivery?sslmode=prefer",
    }
    out = subprocess.run(["/bin/sh", str(tmp_path / "start.sh")], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "started /etc/pgbouncer/pgbouncer.ini"
    userlist = (tmp_path / "userlist.txt").read_text().splitlines()
    assert userlist == ['"orderflow_orders" "Abc123"', '"orderflow_delivery" "p@ss""w"']
    assert oct((tmp_path / "userlist.txt").stat().st_mode & 0o777) == "0o600"


def test_network_policies_let_only_the_services_in_and_pgbouncer_out_to_postgresql():
    objects = render(None, ON)
    policies = {p["metadata"]["name"]: p["spec"] for p in by_kind(objects, "NetworkPolicy")}
    own = policies[PGB]
    sources = [peer["podSelector"]["matchLabels"]["app.kubernetes.io/component"] for peer in own["ingress"][0]["from"]]
    assert sources == ["order-api", "status-consumer", "delivery-service"]
    assert {p["port"] for rule in own["egress"] for p in rule["ports"]} == {53, 5432}
    for name in SERVICES:
        rules = policies[name]["egress"]
        to_pgb = [r for r in rules if any(peer.get("podSelector", {}).get("matchLabels", {}).get("app.kubernetes.io/component") == "pgbouncer" for peer in r.get("to", []))]
        assert to_pgb and to_pgb[0]["ports"] == [{"port": 6432, "protocol": "TCP"}], name


def test_connection_budget_counts_pgbouncers_server_pools():
    # 2 replicas x 2 databases x (10 + 2) = 48, plus 6 API replicas' LISTEN connections: 54 <= 95.
    render(None, ON)
    proc = helm("template", "shop", str(CHART), "--namespace", "orderflow", "--set", "pgbouncer.enabled=true",
                "--set", "pgbouncer.poolSize=30", check=False)
    assert proc.returncode != 0 and "PgBouncer could open 128 PostgreSQL connections" in proc.stderr, proc.stderr
    # Without PgBouncer the same large service pools would not fit; through it they do.
    big = ("pgbouncer.enabled=true", "orderApi.databaseMaxConnections=50")
    assert render(None, big)


@pytest.mark.parametrize("version", ["1.30.0", kubernetes_validate.utils.latest_version()])
def test_pgbouncer_objects_validate_strictly(version):
    failures = []
    for obj in render(None, ON):
        if obj["metadata"]["name"] != PGB and not (obj["kind"] == "Deployment" and obj["metadata"]["name"] in SERVICES):
            continue
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.ValidationError as err:
            failures.append(f"{obj['kind']}/{obj['metadata']['name']}: {'.'.join(map(str, err.path))}: {err.message}")
    assert not failures, "\n".join(failures)


def test_checkov_passes_with_pgbouncer(tmp_path):
    report = checkov(render_text(None, ON), tmp_path)
    failed = [f"{c['check_id']} {c['resource']}: {c['check_name']}" for c in report["results"]["failed_checks"]]
    assert not failed, "checkov failures:\n" + "\n".join(failed)


def test_lints_strictly_with_pgbouncer():
    out = helm("lint", "--strict", str(CHART), "--namespace", "orderflow", "--set", "pgbouncer.enabled=true").stdout
    assert "1 chart(s) linted, 0 chart(s) failed" in out


def test_verify_full_through_pgbouncer_verifies_postgres_and_not_the_in_namespace_hop():
    objects = render(Path(__file__).parent / "data" / "pgbouncer-verify-full-values.yaml")
    for name in SERVICES:
        env = env_of(one(objects, "Deployment", name))
        assert env["DATABASE_POOLER_SSLMODE"] == "prefer", name
        assert env["PGSSLROOTCERT"].startswith("/"), name
    ini = "\n".join(str(v) for o in objects if o["kind"] == "ConfigMap" for v in o.get("data", {}).values())
    assert "server_tls_sslmode = verify-full" in ini
    assert "server_tls_ca_file" in ini
