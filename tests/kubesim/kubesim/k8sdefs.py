"""The upstream OpenAPI definitions of the built-in kinds.

They come from the ``kubernetes-validate`` package, which ships the schemas generated from
kube-apiserver's ``/openapi/v2`` document (``api/openapi-spec/swagger.json`` in
kubernetes/kubernetes), converted to JSON Schema. The ``-strict`` flavour marks every object
``additionalProperties: false``, which is what an API server's strict field validation enforces.

Each definition keeps the upstream extensions: ``x-kubernetes-patch-merge-key``,
``x-kubernetes-patch-strategy``, ``x-kubernetes-list-type``, ``x-kubernetes-group-version-kind``.
"""

from __future__ import annotations

import functools
import json
from importlib import resources
from typing import Any

#: The Kubernetes release whose schemas kubesim serves and validates against.
KUBE_VERSION = "1.37.0"
_SCHEMA_DIR = f"v{KUBE_VERSION}-local-strict"

JSONSchema = dict[str, Any]


@functools.cache
def definitions() -> dict[str, JSONSchema]:
    """All definitions, keyed by their upstream name (``io.k8s.api.core.v1.Pod``)."""
    ref = resources.files("kubernetes_validate").joinpath(
        "kubernetes-json-schema", _SCHEMA_DIR, "_definitions.json"
    )
    with ref.open("r", encoding="utf-8") as f:
        data: dict[str, Any] = json.load(f)
    defs: dict[str, JSONSchema] = data["$defs"]
    return defs


@functools.cache
def gvk_index() -> dict[tuple[str, str, str], str]:
    """Maps (group, version, kind) to the name of the definition of that kind."""
    index: dict[tuple[str, str, str], str] = {}
    for name, schema in definitions().items():
        for gvk in schema.get("x-kubernetes-group-version-kind", []):
            index[(gvk["group"], gvk["version"], gvk["kind"])] = name
    return index


def definition_name(group: str, version: str, kind: str) -> str | None:
    return gvk_index().get((group, version, kind))


def definition(group: str, version: str, kind: str) -> JSONSchema | None:
    name = definition_name(group, version, kind)
    return definitions()[name] if name else None


def ref_name(schema: JSONSchema) -> str | None:
    """The definition name a ``$ref`` points at, or None."""
    ref = schema.get("$ref")
    if not isinstance(ref, str):
        return None
    return ref.rsplit("/", 1)[-1]


def resolve(schema: JSONSchema) -> JSONSchema:
    """Follow ``$ref`` (possibly chained) to the schema it names."""
    seen = 0
    while (name := ref_name(schema)) is not None:
        schema = definitions()[name]
        seen += 1
        if seen > 32:
            raise ValueError(f"$ref loop at {name}")
    return schema


def types_of(schema: JSONSchema) -> set[str]:
    """The JSON types a schema admits, with the ``null`` the converter adds removed."""
    t = schema.get("type")
    if t is None:
        return set()
    if isinstance(t, str):
        return {t}
    return {x for x in t if x != "null"}
