"""Offline validation of the Kubernetes manifests in deploy/k8s (`make k8s-check`; the unit tests run it).

Core kinds are checked by `kubernetes-validate` against the Kubernetes OpenAPI schemas it bundles, in strict
mode (unknown fields are errors, which catches typos that a cluster would silently drop). KServe's kinds have
no published schema reachable from here, so one is derived from the model classes in the pinned `kserve`
wheel from PyPI: each generated class lists its fields' JSON names and types (`attribute_map`,
`openapi_types`) and says which are required. The wheel's sources are parsed, never imported (importing
kserve pulls in dozens of packages); it is downloaded once, hash-checked, from requirements/kserve-schema.txt.
A document of a kind with no schema fails: nothing passes unchecked.

    python -m modelops.dev.k8s deploy/k8s/kustomization.yaml     (make k8s-check)
"""

from __future__ import annotations

import argparse
import ast
import json
import re
import subprocess
import sys
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import yaml
from referencing import Registry, Resource

from contract.catalog import REPO_ROOT, STATE_DIR

KSERVE_PIN = REPO_ROOT / "requirements" / "kserve-schema.txt"
WHEEL_CACHE = STATE_DIR / "cache"
KUBERNETES_VERSION = "1.33.0"
# The kinds this project deploys from KServe, and the wheel class that describes each.
KSERVE_KINDS = {
    ("serving.kserve.io/v1beta1", "InferenceService"): "V1beta1InferenceService",
    ("serving.kserve.io/v1alpha1", "ServingRuntime"): "V1alpha1ServingRuntime",
}
_CORE_DEFS = "/api/_definitions.json#/$defs/"
_PRIMITIVES = {"str": "string", "int": "integer", "bool": "boolean", "float": "number"}


@dataclass(frozen=True)
class Finding:
    source: str
    document: str
    message: str

    def __str__(self) -> str:
        return f"{self.source}: {self.document}: {self.message}"


def kserve_wheel() -> Path:
    """The pinned kserve wheel, downloaded into var/cache on first use (pip checks its hash)."""
    pinned = KSERVE_PIN.read_text().split("kserve==", 1)[1].split()[0]
    wheel = WHEEL_CACHE / f"kserve-{pinned}-py3-none-any.whl"
    if not wheel.exists():
        command = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--require-hashes"]
        subprocess.run([*command, "-r", str(KSERVE_PIN), "-d", str(WHEEL_CACHE)], check=True)
    return wheel


def _core_definitions() -> dict[str, Any]:
    schemas = resources.files("kubernetes_validate") / "kubernetes-json-schema"
    return json.loads((schemas / f"v{KUBERNETES_VERSION}-local-strict" / "_definitions.json").read_text())


def _wheel_classes(wheel: Path) -> dict[str, tuple[dict[str, str], dict[str, str], set[str]]]:
    """Generated model class -> (python attribute -> type, python attribute -> JSON name, required attributes)."""
    classes = {}
    with zipfile.ZipFile(wheel) as archive:
        for name in archive.namelist():
            if not re.fullmatch(r"kserve/models/[a-z0-9_]+\.py", name) or name.endswith("__init__.py"):
                continue
            source = archive.read(name).decode()
            required = set(re.findall(r"Invalid value for `(\w+)`, must not be `None`", source))
            for node in ast.parse(source).body:
                if not isinstance(node, ast.ClassDef):
                    continue
                tables = {
                    stmt.targets[0].id: ast.literal_eval(stmt.value)
                    for stmt in node.body
                    if isinstance(stmt, ast.Assign)
                    and isinstance(stmt.targets[0], ast.Name)
                    and stmt.targets[0].id in ("openapi_types", "attribute_map")
                }
                if len(tables) == 2:
                    classes[node.name] = (tables["openapi_types"], tables["attribute_map"], required)
    return classes


class _SchemaBuilder:
    """Turns the wheel's type strings (`list[V1Container]`, `dict(str, str)`, `V1beta1ModelSpec`) into JSON
    schema: KServe classes become local definitions, Kubernetes ones point into the core definitions."""

    def __init__(self, classes: dict[str, tuple[dict[str, str], dict[str, str], set[str]]], core: dict[str, Any]):
        self.classes = classes
        self.core = core

    def _core_name(self, type_name: str) -> str | None:
        if type_name == "ResourceQuantity":
            return "io.k8s.apimachinery.pkg.api.resource.Quantity"
        match = re.fullmatch(r"K8sIoApi([A-Z][a-z]+)(V\d+(?:alpha\d+|beta\d+)?)(\w+)", type_name)
        if match:
            group, version, kind = match.groups()
            name = f"io.k8s.api.{group.lower()}.{version.lower()}.{kind}"
            return name if name in self.core else None
        match = re.fullmatch(r"(V\d+(?:alpha\d+|beta\d+)?)([A-Z]\w*)", type_name)
        if not match:
            return None
        suffix = f".{match.group(1).lower()}.{match.group(2)}"
        hits = sorted(name for name in self.core if name.endswith(suffix))
        preferred = [h for h in hits if h.startswith(("io.k8s.api.core.", "io.k8s.apimachinery.pkg.apis.meta."))]
        return next(iter(preferred or hits), None)

    def schema(self, type_name: str) -> dict[str, Any]:
        type_name = type_name.strip()
        if match := re.fullmatch(r"list\[(.*)\]", type_name):
            return {"type": ["array", "null"], "items": self.schema(match.group(1))}
        if match := re.fullmatch(r"dict\(str,\s*(.*)\)", type_name):
            return {"type": ["object", "null"], "additionalProperties": self.schema(match.group(1))}
        if type_name in _PRIMITIVES:
            return {"type": [_PRIMITIVES[type_name], "null"]}
        if type_name in ("datetime", "date", "V1Time"):
            return {"type": ["string", "null"]}
        if type_name in self.classes:
            return {"$ref": f"#/$defs/{type_name}"}
        if core_name := self._core_name(type_name):
            return {"$ref": _CORE_DEFS + core_name}
        return {}  # `object`, or a type the wheel only names (Knative's, KEDA's): any value

    def document_schema(self, root: str, api_version: str, kind: str) -> dict[str, Any]:
        definitions: dict[str, dict[str, Any]] = {}
        for name, (types, json_names, required) in self.classes.items():
            definitions[name] = {
                "type": ["object", "null"],
                "properties": {json_names[attr]: self.schema(t) for attr, t in types.items()},
                "required": sorted(json_names[a] for a in required if a in json_names),
                "additionalProperties": False,
            }
        top = dict(definitions[root])
        top["type"] = "object"
        top["properties"] = {**top["properties"], "apiVersion": {"const": api_version}, "kind": {"const": kind}}
        top["required"] = ["apiVersion", "kind", "metadata", "spec"]
        return {"$schema": "https://json-schema.org/draft/2020-12/schema", **top, "$defs": definitions}


class ManifestValidator:
    def __init__(self, wheel: Path) -> None:
        core = _core_definitions()
        builder = _SchemaBuilder(_wheel_classes(wheel), core["$defs"])
        registry = Registry().with_resource("/api/_definitions.json", Resource.from_contents(core))
        self.kserve = {
            key: jsonschema.Draft202012Validator(builder.document_schema(cls, *key), registry=registry)
            for key, cls in KSERVE_KINDS.items()
        }

    def check(self, document: dict[str, Any], source: str) -> list[Finding]:
        key = (document.get("apiVersion"), document.get("kind"))
        name = f"{key[1]}/{(document.get('metadata') or {}).get('name')}"
        if key in self.kserve:
            errors = sorted(self.kserve[key].iter_errors(document), key=lambda e: list(map(str, e.path)))
            return [Finding(source, name, f"{'.'.join(map(str, e.path)) or '(top)'}: {e.message}") for e in errors]
        try:
            kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            return [Finding(source, name, f"{'.'.join(map(str, exc.path)) or '(top)'}: {exc.message}")]
        except kubernetes_validate.SchemaNotFoundError:
            return [Finding(source, name, f"no schema for {key[0]} {key[1]} in Kubernetes {KUBERNETES_VERSION}")]
        return []

    def check_files(self, paths: Iterable[Path]) -> tuple[int, list[Finding]]:
        """(documents checked, findings) over every YAML document of every file; a kustomization stands for
        the resources it lists."""
        checked, findings = 0, []
        for path in _expand(paths):
            if not path.is_file():
                findings.append(Finding(str(path), "-", "listed but missing"))
                continue
            for document in yaml.safe_load_all(path.read_text()):
                if document:
                    checked += 1
                    findings += self.check(document, str(path))
        return checked, findings


def _expand(paths: Iterable[Path]) -> list[Path]:
    expanded = []
    for path in paths:
        if path.name == "kustomization.yaml":
            listed = yaml.safe_load(path.read_text()).get("resources", [])
            expanded += _expand(path.parent / entry for entry in listed)
        else:
            expanded.append(path)
    return expanded


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", type=Path, nargs="+", help="manifests, or a kustomization.yaml")
    args = parser.parse_args(argv)
    checked, findings = ManifestValidator(kserve_wheel()).check_files(args.paths)
    for finding in findings:
        print(f"FAIL {finding}")
    print(f"{checked} documents, Kubernetes {KUBERNETES_VERSION} + kserve schemas: {len(findings)} problems")
    return 1 if findings else 0


if __name__ == "__main__":
    sys.exit(main())
