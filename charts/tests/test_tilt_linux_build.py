"""The Tilt loop's Linux build, for real: tilt/build.sh (the very script and flags of
Tilt's `compile` step: `cargo zigbuild --target x86_64-unknown-linux-gnu.<glibc>`)
builds the delivery-service, and the staged binary is an x86-64 ELF for glibc's
loader whose newest GLIBC_ symbol is no newer than the glibc pinned in the build
nor than the runtime image's (tilt/Dockerfile's base), and it runs. The x86_64 build
is the one this machine can run; the arm64 build differs only in the target
(test_tilt.py checks its command).

Cost: the cargo target dir is the shared ~/.cache/orderflow/target (the cross build
lands in its x86_64-unknown-linux-gnu/ subfolder), so a warm run is a no-op build of
seconds; a cold one compiles the service's ~420 crates once, about 4-5 minutes on 2
cores. The build is capped at 25 minutes (it may also wait for cargo's lock).
The binary-reading helpers (elfcheck.py) are checked on known inputs first.
"""

import platform
import re
import subprocess
import sys
import tomllib

import pytest

import elfcheck
from conftest import ROOT
from test_tilt import build_sh, target_of

SERVICE = "delivery-service"
BUILD_TIMEOUT_S = 25 * 60


def test_elfcheck_reads_a_glibc_binary_and_refuses_a_mach_o(tmp_path):
    python = elfcheck.read(sys.executable)
    assert python.machine == {"x86_64": "x86_64", "aarch64": "aarch64"}.get(platform.machine(), python.machine)
    assert python.interpreter and "ld-linux" in python.interpreter
    assert (2, 2) <= python.max_glibc <= elfcheck.parse_glibc(platform.libc_ver()[1])
    mach_o = tmp_path / "orderflow"
    mach_o.write_bytes(b"\xcf\xfa\xed\xfe" + bytes(60))  # what `cargo build` makes on macOS
    with pytest.raises(elfcheck.NotElf, match="Mach-O"):
        elfcheck.read(mach_o)
    script = tmp_path / "script"
    script.write_text("#!/bin/sh\n")
    with pytest.raises(elfcheck.NotElf):
        elfcheck.read(script)


def test_base_image_glibc_table_lookup():
    assert elfcheck.base_image_glibc("debian:trixie-slim") == (2, 41)
    assert elfcheck.base_image_glibc("gcr.io/distroless/cc-debian12:nonroot") == (2, 36)
    assert elfcheck.base_image_glibc("debian:bookworm-slim@sha256:" + "0" * 64) == (2, 36)
    with pytest.raises(KeyError, match="BASE_IMAGE_GLIBC"):
        elfcheck.base_image_glibc("alpine:3.20")


@pytest.fixture(scope="module")
def staged(tmp_path_factory):
    if platform.machine() not in ("x86_64", "AMD64"):
        pytest.skip("runs the x86_64 build, which needs an x86_64 host")
    stage = tmp_path_factory.mktemp("tilt-build")
    env = {"ORDERFLOW_TILT_ARCH": "amd64", "ORDERFLOW_TILT_STAGE_DIR": str(stage)}
    command = build_sh("--print", SERVICE, env=env)
    build_sh(SERVICE, env=env, timeout=BUILD_TIMEOUT_S)
    return stage / SERVICE, target_of(command)


def test_the_staged_binary_is_linux_x86_64_for_glibcs_loader(staged):
    binary, _ = staged
    linux = elfcheck.read(binary)
    assert linux.machine == "x86_64"
    assert linux.interpreter == "/lib64/ld-linux-x86-64.so.2"


def test_it_needs_no_newer_glibc_than_pinned_nor_than_the_runtime_image(staged):
    binary, target = staged
    pinned = elfcheck.parse_glibc(target.split(".", 1)[1])
    base = re.search(r"^ARG BASE=(\S+)$", (ROOT / "tilt/Dockerfile").read_text(), re.M).group(1)
    needed = elfcheck.read(binary).max_glibc
    assert needed is not None, "a dynamically linked glibc binary names its GLIBC_ versions"
    assert needed <= pinned <= elfcheck.base_image_glibc(base), (needed, pinned, base)


def test_it_runs(staged):
    binary, _ = staged
    proc = subprocess.run([str(binary), "--version"], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    version = tomllib.loads((ROOT / "services" / SERVICE / "Cargo.toml").read_text())["package"]["version"]
    assert proc.stdout.strip() == f"{SERVICE} {version}"
