"""Generate the ClusterResync CustomResourceDefinition from the pydantic models.

pydantic's JSON Schema is turned into a Kubernetes *structural* schema
(``apiextensions-apiserver/pkg/apiserver/schema``): every ``$ref`` inlined, optional fields
(``X | None``) become plain ``X`` (absent rather than null), ``Literal`` becomes a string enum,
titles are dropped, and the validation rules that JSON Schema cannot say are added as
``x-kubernetes-validations`` (CEL). ``python -m clusterresync.crdgen crds/`` writes the file that
``make manifests`` produces; a test fails when the committed file differs.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import yaml

from . import models

JSON = dict[str, Any]

_DROP = {"title", "additionalProperties"}

# Rules JSON Schema cannot express, by the dotted path of the schema node they sit on.
VALIDATIONS: dict[str, list[JSON]] = {
    "spec": [
        {
            "rule": "self == oldSelf",
            "message": "spec is immutable: a ClusterResync runs once, like a Job; create a new one to resync again",
        },
        {
            "rule": "!has(self.primary.podName) || !has(self.replicas) || !(self.primary.podName in self.replicas)",
            "message": "replicas must not include the primary pod (primary.podName): the primary is never resynced",
        },
        {
            "rule": "!has(self.timeouts) || !has(self.timeouts.preflightSeconds) || "
            "self.timeouts.preflightSeconds == 0 || !has(self.primaryStableSeconds) || "
            "self.primaryStableSeconds < self.timeouts.preflightSeconds",
            "message": "primaryStableSeconds must be below timeouts.preflightSeconds, so that a primary that has just "
            "become Ready can become stable within the wait; set timeouts.preflightSeconds to 0 to check the "
            "primary once, without waiting",
        },
    ],
    "spec.primary": [
        {
            "rule": "has(self.podName) != has(self.selector)",
            "message": "exactly one of podName and selector must be set",
        },
    ],
    "spec.primary.selector": [
        {
            "rule": "(has(self.matchLabels) && size(self.matchLabels) > 0) || "
            "(has(self.matchExpressions) && size(self.matchExpressions) > 0)",
            "message": "an empty selector would match every pod: give matchLabels or matchExpressions",
        },
    ],
    "spec.primary.selector.matchExpressions[*]": [
        {
            "rule": "!(self.operator in ['In', 'NotIn']) || (has(self.values) && size(self.values) > 0)",
            "message": "values must be non-empty when the operator is In or NotIn",
        },
        {
            "rule": "!(self.operator in ['Exists', 'DoesNotExist']) || !has(self.values) || size(self.values) == 0",
            "message": "values must be empty when the operator is Exists or DoesNotExist",
        },
    ],
}
LIST_SETS = {"spec.volumes", "spec.replicas"}
# Lists of objects keyed by a field (server-side apply merges them by key; a key appears once).
LIST_MAPS = {"status.conditions": ["type"], "status.replicas": ["name"]}
# Conditions: while the resync works only Progressing is True; once over, only Complete or Failed.
TRUE_CONDITION = '.status.conditions[?(@.status=="True")]'

PRINTER_COLUMNS = [
    {
        "name": "Target",
        "type": "string",
        "jsonPath": ".spec.target.name",
        "description": "The workload being resynced.",
    },
    {
        "name": "Primary",
        "type": "string",
        "jsonPath": ".status.primary.podName",
        "description": "The primary pod.",
    },
    {
        "name": "Phase",
        "type": "string",
        "jsonPath": ".status.phase",
        "description": "Where the resync stands.",
    },
    {
        "name": "Progress",
        "type": "string",
        "jsonPath": ".status.progress",
        "description": "Replicas done over replicas to do.",
    },
    {
        "name": "Reason",
        "type": "string",
        "jsonPath": f"{TRUE_CONDITION}.reason",
        "description": "The reason of the Complete or Failed condition once the resync is over, else of Progressing.",
    },
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
    {
        "name": "Message",
        "type": "string",
        "priority": 1,
        "jsonPath": f"{TRUE_CONDITION}.message",
        "description": "The message of that condition (kubectl get -o wide).",
    },
]


def _structural(node: JSON, defs: JSON, path: str) -> JSON:
    if "$ref" in node:
        name = node["$ref"].rsplit("/", 1)[-1]
        merged = {**defs[name], **{k: v for k, v in node.items() if k != "$ref"}}
        return _structural(merged, defs, path)
    if "anyOf" in node:
        alts = [a for a in node["anyOf"] if a.get("type") != "null"]
        if len(alts) != 1:
            raise ValueError(f"{path}: a union of several types has no structural schema: {node['anyOf']}")
        merged = {**alts[0], **{k: v for k, v in node.items() if k != "anyOf"}}
        if merged.get("default", 0) is None:
            del merged["default"]
        return _structural(merged, defs, path)
    out: JSON = {}
    if "description" in node:
        out["description"] = " ".join(str(node["description"]).split())
    if "const" in node:
        out["type"] = "string"
        out["enum"] = [node["const"]]
    elif "enum" in node:
        out["type"] = "string"
        out["enum"] = list(node["enum"])
    else:
        out["type"] = node["type"]
    for k in (
        "minimum",
        "maximum",
        "minLength",
        "maxLength",
        "minItems",
        "maxItems",
        "minProperties",
        "maxProperties",
        "pattern",
        "format",
    ):
        if k in node:
            out[k] = node[k]
    if "default" in node and node["default"] is not None:
        out["default"] = node["default"]
    if out["type"] == "object":
        props = node.get("properties")
        if props:
            out["properties"] = {
                k: _structural(v, defs, f"{path}.{k}" if path else k) for k, v in props.items()
            }
            required = [r for r in node.get("required", []) if "default" not in out["properties"][r]]
            if required:
                out["required"] = required
        addl = node.get("additionalProperties")
        if isinstance(addl, dict) and not props:
            out["additionalProperties"] = _structural(addl, defs, f"{path}[*]")
        elif not props:
            out["x-kubernetes-preserve-unknown-fields"] = True
    elif out["type"] == "array":
        out["items"] = _structural(node["items"], defs, f"{path}[*]")
        if path in LIST_SETS:
            out["x-kubernetes-list-type"] = "set"
        elif path in LIST_MAPS:
            out["x-kubernetes-list-type"] = "map"
            out["x-kubernetes-list-map-keys"] = LIST_MAPS[path]
    if path in VALIDATIONS:
        out["x-kubernetes-validations"] = VALIDATIONS[path]
    return {k: v for k, v in out.items() if k not in _DROP or k == "additionalProperties"}


def _object_defaults(schema: JSON) -> None:
    """An object whose fields all have defaults gets ``default: {}``, so its defaults apply when it is omitted."""
    for prop in (schema.get("properties") or {}).values():
        _object_defaults(prop)
        if (
            prop.get("type") == "object"
            and prop.get("properties")
            and "default" not in prop
            and all("default" in p for p in prop["properties"].values())
        ):
            prop["default"] = {}


def openapi_schema() -> JSON:
    spec = models.ClusterResyncSpec.model_json_schema(by_alias=True, ref_template="#/$defs/{model}")
    status = models.ClusterResyncStatus.model_json_schema(by_alias=True, ref_template="#/$defs/{model}")
    spec_s = _structural(spec, spec.get("$defs", {}), "spec")
    status_s = _structural(status, status.get("$defs", {}), "status")
    _object_defaults(spec_s)
    # Status fields are written by the operator only; no server-side defaults there.
    _strip_defaults(status_s)
    return {
        "type": "object",
        "description": models.ClusterResync.__doc__ or "",
        "required": ["spec"],
        "properties": {
            "apiVersion": {
                "type": "string",
                "description": "APIVersion defines the versioned schema of this representation of an object.",
            },
            "kind": {
                "type": "string",
                "description": "Kind is a string value representing the REST resource this object represents.",
            },
            "metadata": {"type": "object"},
            "spec": {**spec_s, "description": "What to resync, from where, and how. Immutable once created."},
            "status": {**status_s, "description": "Progress and outcome, written by the operator."},
        },
    }


def _strip_defaults(schema: JSON) -> None:
    schema.pop("default", None)
    for prop in (schema.get("properties") or {}).values():
        _strip_defaults(prop)
    if isinstance(schema.get("items"), dict):
        _strip_defaults(schema["items"])


def crd() -> JSON:
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{models.PLURAL}.{models.GROUP}"},
        "spec": {
            "group": models.GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": models.KIND,
                "listKind": f"{models.KIND}List",
                "plural": models.PLURAL,
                "singular": models.SINGULAR,
                "shortNames": list(models.SHORT_NAMES),
            },
            "versions": [
                {
                    "name": models.VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": PRINTER_COLUMNS,
                    "schema": {"openAPIV3Schema": openapi_schema()},
                }
            ],
        },
    }


HEADER = "# Generated by `make manifests` from operator/clusterresync/models.py. Do not edit.\n"


def render() -> str:
    return HEADER + yaml.safe_dump(crd(), sort_keys=False, width=120)


def crd_path(directory: Path) -> Path:
    return directory / f"{models.GROUP}_{models.PLURAL}.yaml"


KUSTOMIZATION = (
    "# Generated by `make manifests`. Do not edit.\n"
    "apiVersion: kustomize.config.k8s.io/v1beta1\n"
    "kind: Kustomization\n"
    "resources:\n"
    f"  - {models.GROUP}_{models.PLURAL}.yaml\n"
)


def outputs(directory: Path) -> dict[Path, str]:
    """Every generated file and its content."""
    return {crd_path(directory): render(), directory / "kustomization.yaml": KUSTOMIZATION}


def main(argv: list[str] | None = None) -> int:
    args = argv if argv is not None else sys.argv[1:]
    out = Path(args[0] if args else "crds")
    out.mkdir(parents=True, exist_ok=True)
    for path, content in outputs(out).items():
        path.write_text(content)
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
