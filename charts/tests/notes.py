"""Renders the chart's NOTES.txt offline. `helm template` never prints NOTES and
`helm install --dry-run` needs a cluster, so this copies the chart, wraps the NOTES
text in a named template and renders it into a ConfigMap with `helm template
--show-only`: the same template engine, values and release as an install.
"""

import shutil
import tempfile
from pathlib import Path

import yaml

from conftest import CHART, NAMESPACE, RELEASE, helm, values_args

PROBE = "templates/zz-notes-probe.yaml"


def render_notes(values_file: Path | None = None, extra: tuple[str, ...] = ()) -> str:
    """The text `helm install` would print after NOTES: for these values."""
    with tempfile.TemporaryDirectory() as tmp:
        chart = Path(tmp) / CHART.name
        shutil.copytree(CHART, chart)
        notes = (chart / "templates" / "NOTES.txt").read_text()
        (chart / PROBE).write_text(
            '{{- define "probe.notes" -}}\n' + notes + "\n{{- end -}}\n"
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: notes-probe\n"
            'data:\n  notes: {{ include "probe.notes" . | toJson }}\n'
        )
        out = helm(
            "template", RELEASE, str(chart), "--namespace", NAMESPACE, "--show-only", PROBE,
            *values_args(values_file, extra),
        ).stdout
    return yaml.safe_load(out)["data"]["notes"]
