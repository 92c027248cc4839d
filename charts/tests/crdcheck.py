"""Validates custom resources against the OpenAPI v3 schema of their CRD, strictly:
a field the CRD does not declare is an error, as the API server's pruning would
silently drop it (and a dropped field is a misconfiguration nobody notices).

The CRD schema is a Kubernetes "structural schema"; it is turned into a JSON Schema
(draft 7) that jsonschema checks:
- `nullable: true` allows null;
- `x-kubernetes-int-or-string` allows an integer or a string;
- `x-kubernetes-preserve-unknown-fields: true` keeps an object open;
- every other object with `properties` gets `additionalProperties: false`.
`metadata` is checked by Kubernetes itself, not by the CRD, and is left open.
"""

from __future__ import annotations

from pathlib import Path

import jsonschema
import yaml


class CrdIndex:
    """The CRDs found in some files, by (apiVersion, kind)."""

    def __init__(self, files: list[Path]):
        self.schemas: dict[tuple[str, str], dict] = {}
        self.sources: dict[tuple[str, str], Path] = {}
        for path in files:
            for doc in yaml.safe_load_all(path.read_text()):
                if not doc or doc.get("kind") != "CustomResourceDefinition":
                    continue
                spec = doc["spec"]
                for version in spec["versions"]:
                    if not version.get("served", True):
                        continue
                    key = (f"{spec['group']}/{version['name']}", spec["names"]["kind"])
                    self.schemas[key] = strict_schema(version["schema"]["openAPIV3Schema"])
                    self.sources[key] = path

    def knows(self, obj: dict) -> bool:
        return (obj.get("apiVersion"), obj.get("kind")) in self.schemas

    def errors(self, obj: dict) -> list[str]:
        """Every violation of the CRD schema, as 'path: message' lines (empty = valid)."""
        key = (obj.get("apiVersion"), obj.get("kind"))
        if key not in self.schemas:
            return [f"no served CRD version for {key[0]} {key[1]}"]
        validator = jsonschema.Draft7Validator(self.schemas[key])
        return [
            f"{'.'.join(str(p) for p in err.absolute_path) or '<root>'}: {err.message}"
            for err in sorted(validator.iter_errors(obj), key=lambda e: list(map(str, e.absolute_path)))
        ]


def strict_schema(openapi: dict) -> dict:
    """The CRD's openAPIV3Schema as a strict JSON Schema."""
    schema = _convert(openapi)
    # The API server itself checks apiVersion, kind and metadata on every object (CRD
    # schemas leave them out or only say `type: object`).
    properties = schema.setdefault("properties", {})
    properties["apiVersion"] = {"type": "string"}
    properties["kind"] = {"type": "string"}
    properties["metadata"] = {"type": "object"}
    return schema


def _convert(node: dict) -> dict:
    """Converts one schema node and, through the keywords that hold schemas, its children."""
    node = dict(node)
    if isinstance(node.get("properties"), dict):
        node["properties"] = {name: _convert(sub) for name, sub in node["properties"].items()}
    for key in ("items", "not"):
        if isinstance(node.get(key), dict):
            node[key] = _convert(node[key])
    if isinstance(node.get("additionalProperties"), dict):
        node["additionalProperties"] = _convert(node["additionalProperties"])
    for key in ("allOf", "anyOf", "oneOf"):
        if isinstance(node.get(key), list):
            node[key] = [_convert(sub) for sub in node[key]]
    if node.pop("x-kubernetes-int-or-string", False):
        node.pop("type", None)
        node.setdefault("anyOf", [{"type": "integer"}, {"type": "string"}])
    preserve = node.pop("x-kubernetes-preserve-unknown-fields", False)
    if node.pop("nullable", False) and "type" in node:
        node["type"] = [node["type"], "null"]
    for key in [k for k in node if k.startswith("x-kubernetes-")]:
        del node[key]
    if node.get("type") in ("object", ["object", "null"]) and "properties" in node:
        if "additionalProperties" not in node and not preserve:
            node["additionalProperties"] = False
    return node
