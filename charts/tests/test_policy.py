"""A policy scan (checkov) of the rendered chart for the defaults and every ci/ value
set: nothing fails, every accepted exception is skipped with a checkov.io/skipN
annotation beside its object and a one-line reason, and no skip is stale (each
skipped check really fails once its annotation is removed).
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import VALUE_SET_IDS, VALUE_SETS, render, render_text

CHECKOV = Path(sys.executable).with_name("checkov")


def checkov(manifest: str, tmp_path: Path) -> dict:
    path = tmp_path / "rendered.yaml"
    path.write_text(manifest)
    # Offline: no guideline download, no mapping fetch (both only add network errors).
    env = {**os.environ, "BC_SKIP_MAPPING": "TRUE", "CKV_NO_GUIDE": "TRUE"}
    proc = subprocess.run(
        [str(CHECKOV), "--framework", "kubernetes", "-f", str(path), "--compact", "--skip-download", "-o", "json"],
        capture_output=True, text=True, env=env,
    )
    assert proc.stdout.strip(), f"checkov printed nothing (rc {proc.returncode}):\n{proc.stderr[-2000:]}"
    report = json.loads(proc.stdout)
    assert report["summary"]["parsing_errors"] == 0, proc.stderr[-2000:]
    return report


@pytest.mark.parametrize("values_file", VALUE_SETS, ids=VALUE_SET_IDS)
def test_checkov_passes_with_every_exception_explained(values_file, tmp_path):
    report = checkov(render_text(values_file), tmp_path)
    results = report["results"]
    failed = [f"{c['check_id']} {c['resource']}: {c['check_name']}" for c in results["failed_checks"]]
    assert not failed, "checkov failures:\n" + "\n".join(failed)
    assert report["summary"]["passed"] > 100
    for check in results.get("skipped_checks", []):
        reason = (check["check_result"].get("suppress_comment") or "").strip()
        assert len(reason) > 20 and "\n" not in reason, f"{check['check_id']} on {check['resource']} is skipped without a reason"


def test_no_skip_annotation_is_stale(tmp_path):
    """Removing the checkov.io/skip annotations turns exactly the skipped checks into failures."""
    objects = render(None)
    skipped = set()
    for obj in objects:
        annotations = obj["metadata"].get("annotations", {})
        for key in [k for k in annotations if k.startswith("checkov.io/skip")]:
            skipped.add((annotations.pop(key).split("=", 1)[0], obj["kind"], obj["metadata"]["name"]))
    assert skipped, "expected the documented exceptions to be present"
    report = checkov(yaml.safe_dump_all(objects), tmp_path)
    failed = set()
    for check in report["results"]["failed_checks"]:
        kind, _namespace, name = check["resource"].split(".", 2)
        failed.add((check["check_id"], kind, name))
    assert failed == skipped, f"stale skips: {sorted(skipped - failed)}; unexplained failures: {sorted(failed - skipped)}"
