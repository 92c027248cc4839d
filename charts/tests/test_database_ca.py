"""The PostgreSQL CA bundle (databaseCA): every pod that connects to PostgreSQL (the
controller, the services, the helm test's client registration) mounts it read-only and
names it in PGSSLROOTCERT, which sqlx's PgConnectOptions reads for sslmode verify-ca and
verify-full (https://docs.rs/sqlx/0.9/sqlx/postgres/struct.PgConnectOptions.html; libpq
reads the same variable); PgBouncer verifies PostgreSQL against it (server_tls_ca_file,
https://www.pgbouncer.org/config.html#server_tls_ca_file). Without a bundle the binaries
trust only the Mozilla roots built in (webpki-roots), so verify-ca / verify-full get a
NOTES warning.
"""

import configparser
from pathlib import PurePosixPath

import pytest

from conftest import RELEASE, VALUE_SETS, by_kind, pod_specs, render
from notes import render_notes

FULL = f"{RELEASE}-orderflow"
WARNING = "databaseCA names no CA bundle"


def value_set(stem):
    return next(p for p in VALUE_SETS if p and p.stem == stem)


def connects_to_postgres(container: dict, owner: str) -> bool:
    env_from = [e.get("secretRef", {}).get("name", "") for e in container.get("envFrom", [])]
    env = [e.get("valueFrom", {}).get("secretKeyRef", {}).get("name", "") for e in container.get("env", [])]
    return owner.endswith("-controller") or any(n.endswith(("-orders-db", "-delivery-db")) for n in env_from + env)


def ca_file(spec: dict, container: dict) -> tuple[str, dict]:
    """Where PGSSLROOTCERT points, and the volume (with its item) mounted there."""
    env = {e["name"]: e.get("value") for e in container.get("env", [])}
    path = PurePosixPath(env["PGSSLROOTCERT"])
    [mount] = [m for m in container.get("volumeMounts", []) if path.parent == PurePosixPath(m["mountPath"])]
    assert mount.get("readOnly") is True
    [volume] = [v for v in spec["volumes"] if v["name"] == mount["name"]]
    source = volume.get("secret") or volume.get("configMap")
    [item] = [i for i in source["items"] if i["path"] == path.name]
    return item["key"], volume


@pytest.mark.parametrize("stem,source", [("aws-irsa-values", ("configMap", "rds-ca-bundle", "global-bundle.pem")),
                                         ("aws-eks-pod-identity-values", ("secret", "rds-ca", "ca.crt"))])
def test_every_postgres_client_mounts_the_bundle(stem, source):
    objects = render(value_set(stem))
    clients = 0
    for owner, spec in pod_specs(objects):
        for container in spec.get("initContainers", []) + spec["containers"]:
            if not connects_to_postgres(container, owner):
                continue
            clients += 1
            key, volume = ca_file(spec, container)
            kind, name, wanted_key = source
            assert volume[kind].get("secretName", volume[kind].get("name")) == name and key == wanted_key, owner
    assert clients >= 4  # controller, order API, delivery-service, helm test (and the status consumer)


def test_no_bundle_no_mount():
    for owner, spec in pod_specs(render(None)):
        for container in spec["containers"] + spec.get("initContainers", []):
            assert "PGSSLROOTCERT" not in {e["name"] for e in container.get("env", [])}, owner
        assert all(v["name"] != "postgres-ca" for v in spec.get("volumes", [])), owner


def pgbouncer_ini(objects) -> configparser.ConfigParser:
    [config] = [c for c in by_kind(objects, "ConfigMap") if c["metadata"]["name"] == f"{FULL}-pgbouncer"]
    ini = configparser.ConfigParser()
    ini.read_string(config["data"]["pgbouncer.ini"])
    return ini


def test_pgbouncer_verifies_postgres_against_the_bundle():
    objects = render(None, ("pgbouncer.enabled=true", "pgbouncer.serverSslMode=verify-full", "databaseCA.configMapName=pg-ca"))
    ini = pgbouncer_ini(objects)["pgbouncer"]
    assert ini["server_tls_sslmode"] == "verify-full"
    [(owner, spec)] = [(o, s) for o, s in pod_specs(objects) if o.endswith("-pgbouncer")]
    [container] = spec["containers"]
    mount = next(m for m in container["volumeMounts"] if ini["server_tls_ca_file"].startswith(m["mountPath"] + "/"))
    volume = next(v for v in spec["volumes"] if v["name"] == mount["name"])
    assert volume["configMap"]["name"] == "pg-ca"
    assert volume["configMap"]["items"][0]["path"] == PurePosixPath(ini["server_tls_ca_file"]).name


def test_pgbouncer_without_bundle_keeps_the_pipeline_mode():
    ini = pgbouncer_ini(render(None, ("pgbouncer.enabled=true",)))["pgbouncer"]
    assert ini["server_tls_sslmode"] == "prefer" and "server_tls_ca_file" not in ini


@pytest.mark.parametrize("extra,warned", [
    (("pipeline.spec.databases.server.sslMode=verify-full",), True),
    (("pipeline.spec.databases.server.sslMode=verify-ca",), True),
    (("pipeline.spec.databases.server.sslMode=verify-full", "databaseCA.secretName=pg-ca"), False),
    (("pipeline.spec.databases.server.sslMode=require",), False),
    (("pgbouncer.enabled=true", "pgbouncer.serverSslMode=verify-full"), True),
    ((), False),
])
def test_notes_warn_when_a_verified_server_has_no_bundle(extra, warned):
    assert (WARNING in render_notes(None, extra)) == warned
