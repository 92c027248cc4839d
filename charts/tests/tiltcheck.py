"""Evaluates the Tiltfile offline: starlark-rust (PyPI starlark-pyo3) runs it against
Python stubs of the Tilt built-ins it uses, with Tilt's own parameter names, so a
misspelt built-in or argument fails here as it would in `tilt up`. Every call is
recorded for the tests to assert on; helm() and kustomize() really render (helm
template, kubectl kustomize when kubectl is installed) so resource names can be
checked against the objects Tilt would deploy.
"""

import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import starlark as sl
import yaml

TRIGGER_MODE_AUTO = 1
TRIGGER_MODE_MANUAL = 2


@dataclass
class Tilt:
    """What a Tiltfile declared."""

    root: Path
    helm_bin: str
    contexts: list = field(default_factory=list)
    yaml_objects: list = field(default_factory=list)
    images: dict = field(default_factory=dict)
    resources: dict = field(default_factory=dict)
    local: dict = field(default_factory=dict)
    settings: dict = field(default_factory=dict)
    loads: list = field(default_factory=list)

    # --- the built-ins -----------------------------------------------------
    def allow_k8s_contexts(self, contexts):
        self.contexts += [contexts] if isinstance(contexts, str) else list(contexts)

    def update_settings(self, max_parallel_updates=3, k8s_upsert_timeout_secs=30, suppress_unused_image_warnings=None):
        self.settings = {"max_parallel_updates": max_parallel_updates}

    def kustomize(self, pathToDir, kustomize_bin=None, flags=None):
        path = self._exists(pathToDir)
        if shutil.which("kubectl"):
            out = subprocess.run(["kubectl", "kustomize", str(path)], capture_output=True, text=True, check=True).stdout
            return out
        # Without kubectl: the listed resources, un-kustomized (names are the same).
        kustomization = yaml.safe_load((path / "kustomization.yaml").read_text())
        return "\n---\n".join((path / r).read_text() for r in kustomization["resources"])

    def helm(self, paths, name=None, namespace=None, values=None, set=None, kube_version=None, skip_crds=False):
        chart = self._exists(paths)
        args = [self.helm_bin, "template", name or chart.name, str(chart), "--include-crds"]
        if namespace:
            args += ["--namespace", namespace]
        for v in values or []:
            args += ["-f", str(self._exists(v))]
        for s in set or []:
            args += ["--set", s]
        return subprocess.run(args, capture_output=True, text=True, check=True, cwd=self.root).stdout

    def k8s_yaml(self, yaml_text, allow_duplicates=False):
        self.yaml_objects += [d for d in yaml.safe_load_all(yaml_text) if d]

    def docker_build(self, ref, context, build_args=None, dockerfile="Dockerfile", dockerfile_contents="",
                     live_update=None, match_in_env_vars=False, ignore=None, only=None, entrypoint=None,
                     target="", ssh="", network="", secret="", extra_tag="", container_args=None,
                     cache_from=None, pull=False, platform=""):
        assert ref not in self.images, f"image {ref} built twice"
        self.images[ref] = {"context": context, "dockerfile": str(self._exists(dockerfile)),
                            "build_args": dict(build_args or {}), "only": list(only or []),
                            "live_update": list(live_update or [])}

    def k8s_resource(self, workload="", new_name="", port_forwards=None, extra_pod_selectors=None,
                     trigger_mode=TRIGGER_MODE_AUTO, resource_deps=None, objects=None, auto_init=True,
                     pod_readiness="", links=None, labels=None, discovery_strategy=""):
        name = new_name or workload
        assert name and name not in self.resources, f"resource {name!r} declared twice or unnamed"
        forwards = [port_forwards] if isinstance(port_forwards, (str, int)) else list(port_forwards or [])
        self.resources[name] = {"workload": workload, "port_forwards": [str(p) for p in forwards],
                                "resource_deps": list(resource_deps or []), "objects": list(objects or []),
                                "labels": list(labels or []), "links": list(links or [])}

    def local_resource(self, name, cmd="", deps=None, trigger_mode=TRIGGER_MODE_AUTO, resource_deps=None,
                       ignore=None, auto_init=True, serve_cmd="", cmd_bat="", serve_cmd_bat="",
                       allow_parallel=False, links=None, tags=None, env=None, serve_env=None,
                       readiness_probe=None, dir="", serve_dir="", labels=None):
        assert name not in self.local and name not in self.resources, f"resource {name!r} declared twice"
        for dep in deps or []:
            self._exists(dep)
        self.local[name] = {"cmd": cmd, "deps": list(deps or []), "resource_deps": list(resource_deps or []),
                            "trigger_mode": trigger_mode, "auto_init": auto_init, "env": dict(env or {}),
                            "labels": list(labels or []), "ignore": list(ignore or [])}

    def link(self, url, name=""):
        return {"url": url, "name": name}

    def getenv(self, key, default=None):
        return default

    # --- helpers -------------------------------------------------------------
    def _exists(self, path) -> Path:
        full = self.root / path
        assert full.exists(), f"the Tiltfile names {path}, which does not exist"
        return full

    def builtins(self) -> sl.Module:
        module = sl.Module()
        for name in ("allow_k8s_contexts", "update_settings", "kustomize", "helm", "k8s_yaml", "docker_build",
                     "k8s_resource", "local_resource", "link"):
            module.add_callable(name, getattr(self, name))
        module.add_callable("_getenv", self.getenv)
        module["TRIGGER_MODE_AUTO"] = TRIGGER_MODE_AUTO
        module["TRIGGER_MODE_MANUAL"] = TRIGGER_MODE_MANUAL
        return module


def dialect() -> sl.Dialect:
    d = sl.Dialect.extended()
    d.enable_top_level_stmt = True
    d.enable_f_strings = True
    return d


GLOBALS = sl.Globals.extended_by([sl.LibraryExtension.StructType, sl.LibraryExtension.Json])
# Tilt's `os` module, as far as the Tiltfile uses it.
PRELUDE = "os = struct(getenv = _getenv)\n"


def _eval(tilt: Tilt, path: Path, source: str, loader) -> sl.Module:
    module = tilt.builtins()
    sl.eval(module, sl.parse("prelude", PRELUDE, dialect()), GLOBALS, None)
    sl.eval(module, sl.parse(str(path), source, dialect()), GLOBALS, loader)
    return module


def evaluate(root: Path, helm_bin: str, source: str | None = None) -> Tilt:
    """Runs `root/Tiltfile` (or `source` in its place) and returns what it declared."""
    tilt = Tilt(root=root, helm_bin=helm_bin)

    def load(spec: str) -> sl.FrozenModule:
        assert not spec.startswith("ext://"), f"{spec}: Tilt extensions need the network; keep helpers in tilt/"
        path = tilt._exists(spec.removeprefix("./"))
        tilt.loads.append(spec)
        return _eval(tilt, path, path.read_text(), sl.FileLoader(load)).freeze()

    tiltfile = root / "Tiltfile"
    _eval(tilt, tiltfile, source if source is not None else tiltfile.read_text(), sl.FileLoader(load))
    return tilt
