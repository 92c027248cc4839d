"""The order API's keys and the helm test's client secret, as the chart renders them: the API
mounts the controller's key Secrets (`<pipeline>-jwt`, `<pipeline>-client-secret-key`, created
once by the controller and never changed: docs/CONTROLLER.md, "Keys") or the ones named by
`jwt.existingSecret` / `clientSecretKey.existingSecret`, as read-only files; the chart itself
renders no key material and no helm test Secret. The helm test pod makes its client secret at
test time (its make-secret script is run here) and registers the client with it.
"""

import os
import subprocess

import pytest

from conftest import RELEASE, VALUE_SET_IDS, VALUE_SETS, by_kind, load_values, one, render

FULL = f"{RELEASE}-orderflow"
API = f"{FULL}-order-api"
TEST_POD = f"{FULL}-helm-test"

# (values key, the controller's Secret suffix and key, the file the API reads it from)
KEYS = [
    ("jwt", "jwt", "jwt.pem", "JWT_PRIVATE_KEY_FILE", "/etc/orderflow/jwt/jwt.pem"),
    ("clientSecretKey", "client-secret-key", "client-secret.key", "CLIENT_SECRET_KEY_FILE",
     "/etc/orderflow/client-secret-key/client-secret.key"),
]


@pytest.mark.parametrize("values_file", VALUE_SETS, ids=VALUE_SET_IDS)
@pytest.mark.parametrize("values_key,suffix,data_key,env_name,path", KEYS, ids=[k[0] for k in KEYS])
def test_the_api_mounts_the_controllers_key_secret_or_the_existing_one(values_file, values_key, suffix, data_key,
                                                                       env_name, path):
    values = load_values(values_file)
    settings = values[values_key]
    pipeline = values["pipeline"]["name"] or FULL
    want_name = settings["existingSecret"] or f"{pipeline}-{suffix}"
    want_key = settings["secretKey"] if settings["existingSecret"] else data_key
    objects = render(values_file)
    api = one(objects, "Deployment", API)["spec"]["template"]["spec"]
    volumes = [v for v in api["volumes"] if v.get("secret", {}).get("secretName") == want_name]
    assert len(volumes) == 1, f"no volume of Secret {want_name}: {api['volumes']}"
    secret = volumes[0]["secret"]
    assert secret["items"] == [{"key": want_key, "path": os.path.basename(path)}]
    assert secret["defaultMode"] == 0o440
    [container] = api["containers"]
    [mount] = [m for m in container["volumeMounts"] if m["name"] == volumes[0]["name"]]
    assert mount["readOnly"] is True and path.startswith(mount["mountPath"] + "/")
    env = {e["name"]: e for e in container["env"]}
    assert env[env_name]["value"] == path
    assert env_name.removesuffix("_FILE") not in env, "a key never travels as an environment variable"


@pytest.mark.parametrize("values_file", VALUE_SETS, ids=VALUE_SET_IDS)
def test_the_chart_renders_no_key_and_no_test_secret(values_file):
    """Whatever made them before (lookup + genPrivateKey/randAlphaNum) is gone: a Secret the
    chart rendered would be rendered anew by every `helm template` and rotate the key."""
    rendered = {s["metadata"]["name"]: set(s.get("data", {})) | set(s.get("stringData", {}))
                for s in by_kind(render(values_file), "Secret")}
    pipeline = load_values(values_file)["pipeline"]["name"] or FULL
    for name, keys in rendered.items():
        assert not keys & {"jwt.pem", "client-secret.key", "client_secret"}, f"{name} holds key material: {keys}"
        assert name not in {f"{pipeline}-jwt", f"{pipeline}-client-secret-key", f"{FULL}-helm-test-client"}, name


def test_existing_secrets_are_mounted_with_their_own_key():
    values = ("jwt.existingSecret=sealed-jwt", "jwt.secretKey=signing.pem",
              "clientSecretKey.existingSecret=sealed-client-key", "clientSecretKey.secretKey=key")
    api = one(render(None, values), "Deployment", API)["spec"]["template"]["spec"]
    secrets = {v["secret"]["secretName"]: v["secret"]["items"] for v in api["volumes"] if "secret" in v}
    assert secrets["sealed-jwt"] == [{"key": "signing.pem", "path": "jwt.pem"}]
    assert secrets["sealed-client-key"] == [{"key": "key", "path": "client-secret.key"}]
    assert f"{FULL}-jwt" not in secrets and f"{FULL}-client-secret-key" not in secrets


def test_the_helm_test_registers_its_client_with_a_secret_made_in_the_pod():
    pod = one(render(None), "Pod", TEST_POD)
    spec = pod["spec"]
    [make, register] = spec["initContainers"]
    assert (make["name"], register["name"]) == ("make-secret", "register-client"), "the secret exists before it is used"
    assert "--client-secret-file=/work/client-secret" in register["args"] and "--replace" in register["args"]
    [roundtrip] = spec["containers"]
    assert "ORDERFLOW_CLIENT_SECRET=$(cat /work/client-secret)" in roundtrip["args"][0]
    for container in (make, register, roundtrip):
        mounts = {m["name"]: m for m in container.get("volumeMounts", [])}
        assert mounts["work"]["mountPath"] == "/work", container["name"]
        assert mounts["work"].get("readOnly", False) == (container is not make), "only make-secret writes it"
        for env in container.get("env", []):
            assert "secretKeyRef" not in env.get("valueFrom", {}), f"{container['name']}: no Secret holds the test secret"
    [work] = [v for v in spec["volumes"] if v["name"] == "work"]
    assert work["emptyDir"]["medium"] == "Memory", "the secret never touches the node's disk"


def test_the_make_secret_script_writes_a_fresh_private_secret(tmp_path):
    """The init container's own script (busybox in the test image; coreutils here), with
    /work pointed at a temporary directory: 40 letters and digits, mode 0600, new each run."""
    pod = one(render(None), "Pod", TEST_POD)
    [make] = [c for c in pod["spec"]["initContainers"] if c["name"] == "make-secret"]
    assert make["command"] == ["/bin/sh", "-ec"]
    script = make["args"][0].replace("/work/", f"{tmp_path}/")
    secrets = []
    for _ in range(2):
        subprocess.run(["/bin/sh", "-ec", script], check=True)
        secret = (tmp_path / "client-secret").read_text()
        assert len(secret) == 40 and secret.isascii() and secret.isalnum(), secret
        assert (tmp_path / "client-secret").stat().st_mode & 0o777 == 0o600
        secrets.append(secret)
    assert secrets[0] != secrets[1]

