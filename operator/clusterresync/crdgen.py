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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel

from . import models

JSON = dict[str, Any]

_DROP = {"title", "additionalProperties"}


# Rules JSON Schema cannot express, by the dotted path of the schema node they sit on.
def _immutable_but_approval() -> str:
    """The spec is immutable, except ``suspend``, which may go from true to false (an approval).
    CEL cannot compare an object without one field, so every other field is compared by name."""
    others = [
        f.alias or n for n, f in models.ClusterResyncSpec.model_fields.items() if (f.alias or n) != "suspend"
    ]
    same = " && ".join(
        f"has(self.{f}) == has(oldSelf.{f}) && (!has(self.{f}) || self.{f} == oldSelf.{f})" for f in others
    )
    return (
        "self == oldSelf || (has(oldSelf.suspend) && oldSelf.suspend && "
        f"(!has(self.suspend) || !self.suspend) && {same})"
    )


NOTIFY_VALIDATIONS: list[JSON] = [
    {"rule": "has(self.webhook) || has(self.email)", "message": "notify needs a webhook, an email, or both"},
]
SMTP_VALIDATIONS: list[JSON] = [
    {
        "rule": "!has(self.credentialsSecretRef) || self.security != 'None'",
        "message": "credentials are only sent over TLS: with credentialsSecretRef, security must be StartTLS or TLS",
    },
]
PROBE_VALIDATIONS: list[JSON] = [
    {
        "rule": "!has(self.passwordEnv) || !has(self.passwordSecretRef)",
        "message": "set at most one of passwordEnv and passwordSecretRef",
    },
    {
        "rule": "(self.preset == 'Command') == has(self.command)",
        "message": "command is required for the Command preset, and only for it",
    },
    {
        "rule": "!(self.preset in ['Checksum', 'HTTP']) || has(self.path)",
        "message": "path is required for the Checksum and HTTP presets",
    },
]


VALIDATIONS: dict[str, list[JSON]] = {
    "spec": [
        {
            "rule": _immutable_but_approval(),
            "message": "spec is immutable: a ClusterResync runs once, like a Job; create a new one to resync "
            "again. Only suspend can change, from true to false (approving a suspended resync)",
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
    "spec.probe": PROBE_VALIDATIONS,
    "spec.notify": NOTIFY_VALIDATIONS,
    "spec.notify.email.smtp": SMTP_VALIDATIONS,
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
LIST_SETS = {"spec.volumes", "spec.replicas", "spec.notify.events", "spec.notify.email.to"}
# Lists of objects keyed by a field (server-side apply merges them by key; a key appears once).
LIST_MAPS = {
    "status.conditions": ["type"],
    "status.replicas": ["name"],
    "status.probes": ["stage", "pod"],
    "status.notifications": ["channel", "event"],
}
# Conditions: while the resync works only Progressing is True; once over, only Complete or Failed.
TRUE_CONDITION = '.status.conditions[?(@.status=="True")]'

PRINTER_COLUMNS: list[JSON] = [
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


@dataclass(frozen=True)
class Rules:
    """One CRD's additions to its JSON Schema, by the dotted path of the schema node."""

    validations: dict[str, list[JSON]]
    list_sets: set[str]
    list_maps: dict[str, list[str]]


def _structural(node: JSON, defs: JSON, path: str, rules: Rules) -> JSON:
    if "$ref" in node:
        name = node["$ref"].rsplit("/", 1)[-1]
        merged = {**defs[name], **{k: v for k, v in node.items() if k != "$ref"}}
        return _structural(merged, defs, path, rules)
    if "anyOf" in node:
        alts = [a for a in node["anyOf"] if a.get("type") != "null"]
        if len(alts) != 1:
            raise ValueError(f"{path}: a union of several types has no structural schema: {node['anyOf']}")
        merged = {**alts[0], **{k: v for k, v in node.items() if k != "anyOf"}}
        if merged.get("default", 0) is None:
            del merged["default"]
        return _structural(merged, defs, path, rules)
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
        "x-kubernetes-map-type",
    ):
        if k in node:
            out[k] = node[k]
    if "default" in node and node["default"] is not None:
        out["default"] = node["default"]
    if out["type"] == "object":
        props = node.get("properties")
        if props:
            out["properties"] = {
                k: _structural(v, defs, f"{path}.{k}" if path else k, rules) for k, v in props.items()
            }
            required = [r for r in node.get("required", []) if "default" not in out["properties"][r]]
            if required:
                out["required"] = required
        addl = node.get("additionalProperties")
        if isinstance(addl, dict) and not props:
            out["additionalProperties"] = _structural(addl, defs, f"{path}[*]", rules)
        elif not props:
            out["x-kubernetes-preserve-unknown-fields"] = True
    elif out["type"] == "array":
        out["items"] = _structural(node["items"], defs, f"{path}[*]", rules)
        if path in rules.list_sets:
            out["x-kubernetes-list-type"] = "set"
        elif path in rules.list_maps:
            out["x-kubernetes-list-type"] = "map"
            out["x-kubernetes-list-map-keys"] = rules.list_maps[path]
    if path in rules.validations:
        out["x-kubernetes-validations"] = rules.validations[path]
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


@dataclass(frozen=True)
class CrdDef:
    """One custom resource: its names, models, rules and columns."""

    kind: str
    plural: str
    singular: str
    short_names: tuple[str, ...]
    spec_model: type[BaseModel]
    status_model: type[BaseModel]
    root_model: type[BaseModel]
    rules: Rules
    printer_columns: list[JSON]
    spec_description: str


def openapi_schema(d: CrdDef | None = None) -> JSON:
    d = d or CLUSTER_RESYNC
    spec = d.spec_model.model_json_schema(by_alias=True, ref_template="#/$defs/{model}")
    status = d.status_model.model_json_schema(by_alias=True, ref_template="#/$defs/{model}")
    spec_s = _structural(spec, spec.get("$defs", {}), "spec", d.rules)
    status_s = _structural(status, status.get("$defs", {}), "status", d.rules)
    _object_defaults(spec_s)
    # Status fields are written by the operator only; no server-side defaults there.
    _strip_defaults(status_s)
    return {
        "type": "object",
        "description": d.root_model.__doc__ or "",
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
            "spec": {**spec_s, "description": d.spec_description},
            "status": {**status_s, "description": "Progress and outcome, written by the operator."},
        },
    }


def _strip_defaults(schema: JSON) -> None:
    schema.pop("default", None)
    for prop in (schema.get("properties") or {}).values():
        _strip_defaults(prop)
    if isinstance(schema.get("items"), dict):
        _strip_defaults(schema["items"])


def crd(d: CrdDef | None = None) -> JSON:
    d = d or CLUSTER_RESYNC
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{d.plural}.{models.GROUP}"},
        "spec": {
            "group": models.GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": d.kind,
                "listKind": f"{d.kind}List",
                "plural": d.plural,
                "singular": d.singular,
                "shortNames": list(d.short_names),
            },
            "versions": [
                {
                    "name": models.VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": d.printer_columns,
                    "schema": {"openAPIV3Schema": openapi_schema(d)},
                }
            ],
        },
    }


HEADER = "# Generated by `make manifests` from operator/clusterresync/models.py. Do not edit.\n"


def render(d: CrdDef | None = None) -> str:
    return HEADER + yaml.safe_dump(crd(d), sort_keys=False, width=120)


def crd_path(directory: Path, d: CrdDef | None = None) -> Path:
    return directory / f"{models.GROUP}_{(d or CLUSTER_RESYNC).plural}.yaml"


def outputs(directory: Path) -> dict[Path, str]:
    """Every generated file and its content."""
    kustomization = (
        "# Generated by `make manifests`. Do not edit.\n"
        "apiVersion: kustomize.config.k8s.io/v1beta1\n"
        "kind: Kustomization\n"
        "resources:\n" + "".join(f"  - {crd_path(directory, d).name}\n" for d in CRDS)
    )
    out = {crd_path(directory, d): render(d) for d in CRDS}
    out[directory / "kustomization.yaml"] = kustomization
    return out


CLUSTER_RESYNC = CrdDef(
    kind=models.KIND,
    plural=models.PLURAL,
    singular=models.SINGULAR,
    short_names=models.SHORT_NAMES,
    spec_model=models.ClusterResyncSpec,
    status_model=models.ClusterResyncStatus,
    root_model=models.ClusterResync,
    rules=Rules(VALIDATIONS, LIST_SETS, LIST_MAPS),
    printer_columns=PRINTER_COLUMNS,
    spec_description="What to resync, from where, and how. Immutable once created (but suspend: true -> false).",
)

_SELECTOR_RULES = {k: v for k, v in VALIDATIONS.items() if k.startswith("spec.primary")}
POLICY_CONDITION = '.status.conditions[?(@.type=="{}")]'
POLICY_COLUMNS: list[JSON] = [
    {"name": "Target", "type": "string", "jsonPath": ".spec.target.name", "description": "The workload."},
    {"name": "Mode", "type": "string", "jsonPath": ".spec.mode", "description": "Off, Manual or Auto."},
    {
        "name": "In Sync",
        "type": "string",
        "jsonPath": ".status.inSync",
        "description": "Replicas in sync over replicas probed.",
    },
    {
        "name": "Drifted",
        "type": "string",
        "jsonPath": POLICY_CONDITION.format("Drifted") + ".status",
        "description": "Whether a replica needs a resync.",
    },
    {
        "name": "Remediation",
        "type": "string",
        "jsonPath": ".status.lastRemediation.name",
        "description": "The last ClusterResync the policy created.",
    },
    {"name": "Last Probe", "type": "date", "jsonPath": ".status.lastProbeTime"},
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
    {
        "name": "Message",
        "type": "string",
        "priority": 1,
        "jsonPath": ".status.lastDecision",
        "description": "Why a remediation was, or was not, started (kubectl get -o wide).",
    },
]
RESYNC_POLICY = CrdDef(
    kind=models.POLICY_KIND,
    plural=models.POLICY_PLURAL,
    singular=models.POLICY_SINGULAR,
    short_names=models.POLICY_SHORT_NAMES,
    spec_model=models.ResyncPolicySpec,
    status_model=models.ResyncPolicyStatus,
    root_model=models.ResyncPolicy,
    rules=Rules(
        {
            **_SELECTOR_RULES,
            "spec.probe": PROBE_VALIDATIONS,
            "spec.resyncTemplate.notify": NOTIFY_VALIDATIONS,
            "spec.resyncTemplate.notify.email.smtp": SMTP_VALIDATIONS,
            "spec.notify": NOTIFY_VALIDATIONS,
            "spec.notify.email.smtp": SMTP_VALIDATIONS,
        },
        {
            "spec.volumes",
            "spec.resyncTemplate.notify.events",
            "spec.resyncTemplate.notify.email.to",
            "spec.notify.events",
            "spec.notify.email.to",
        },
        {
            "status.conditions": ["type"],
            "status.pods": ["pod"],
            "status.seen": ["pod"],
            "status.notifications": ["id", "channel"],
        },
    ),
    printer_columns=POLICY_COLUMNS,
    spec_description="What to watch, how to probe it, and when and how to remediate.",
)
CRDS = (CLUSTER_RESYNC, RESYNC_POLICY)


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
