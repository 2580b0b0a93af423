"""Decoding checks for built-in kinds against their upstream OpenAPI schemas.

A real API server decodes a built-in object into its Go struct: a JSON value of the wrong type
fails decoding (``400 BadRequest``, "... cannot be handled as a Pod: json: cannot unmarshal ...",
``staging/src/k8s.io/apiserver/pkg/endpoints/handlers/create.go`` via the serializer), and a
field the struct lacks is an unknown field, which ``fieldValidation`` decides about
(``Strict``: rejected; ``Warn``, the default: dropped with a warning; ``Ignore``: dropped;
``staging/src/k8s.io/apiserver/pkg/endpoints/handlers/rest.go``). kubesim walks the object along
the upstream schema (``k8sdefs``) to find both.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from . import k8sdefs

_JSON_TYPE_NAMES = {
    dict: "object",
    list: "array",
    str: "string",
    bool: "bool",
    int: "number",
    float: "number",
}


@dataclass
class DecodeReport:
    unknown: list[str] = field(default_factory=list)
    type_errors: list[str] = field(default_factory=list)


def _json_type(v: Any) -> str:
    if isinstance(v, bool):
        return "bool"
    return _JSON_TYPE_NAMES.get(type(v), type(v).__name__)


def _fits(value: Any, types: set[str]) -> bool:
    if not types:
        return True
    if isinstance(value, bool):
        return "boolean" in types
    if isinstance(value, int):
        return bool(types & {"integer", "number"})
    if isinstance(value, float):
        return "number" in types or ("integer" in types and value.is_integer())
    if isinstance(value, str):
        return "string" in types
    if isinstance(value, list):
        return "array" in types
    if isinstance(value, dict):
        return "object" in types
    return False


def _schema_types(schema: dict[str, Any]) -> set[str]:
    if "oneOf" in schema:
        out: set[str] = set()
        for alt in schema["oneOf"]:
            out |= k8sdefs.types_of(k8sdefs.resolve(alt))
        return out
    return k8sdefs.types_of(schema)


def check(obj: Any, schema: dict[str, Any]) -> DecodeReport:
    report = DecodeReport()
    _walk(obj, schema, "", report, drop=False)
    return report


def drop_unknown(obj: Any, schema: dict[str, Any]) -> None:
    """Remove unknown fields in place (the decoder ignores them under Warn and Ignore)."""
    _walk(obj, schema, "", DecodeReport(), drop=True)


def _walk(value: Any, schema: dict[str, Any], path: str, report: DecodeReport, drop: bool) -> None:
    schema = k8sdefs.resolve(schema)
    if value is None:
        return  # null decodes to the zero value of any Go type
    types = _schema_types(schema)
    if not _fits(value, types):
        want = "/".join(sorted(types)) or "value"
        report.type_errors.append(
            f"cannot unmarshal {_json_type(value)} into Go struct field {path.lstrip('.') or '<root>'} of type {want}"
        )
        return
    if isinstance(value, dict) and "object" in types:
        props: dict[str, Any] = schema.get("properties") or {}
        addl = schema.get("additionalProperties")
        for k in list(value):
            sub = f"{path}.{k}"
            if k in props:
                _walk(value[k], props[k], sub, report, drop)
            elif isinstance(addl, dict):
                _walk(value[k], addl, sub, report, drop)
            elif addl is False or props:
                report.unknown.append(sub.lstrip("."))
                if drop:
                    del value[k]
    elif isinstance(value, list) and "array" in types:
        items = schema.get("items")
        if isinstance(items, dict):
            for i, v in enumerate(value):
                _walk(v, items, f"{path}[{i}]", report, drop)


def fill_required_zeros(obj: Any, schema: dict[str, Any]) -> None:
    """Add the zero value of each missing required scalar field, in place.

    A Go struct field without ``omitempty`` is always serialized, as its zero value when unset
    (``encoding/json``); the upstream OpenAPI marks exactly those fields ``required``. Clients built
    from the OpenAPI (the Python client's pydantic models) rely on them being present, e.g.
    ``StatefulSetStatus.replicas``.
    """
    schema = k8sdefs.resolve(schema)
    if isinstance(obj, dict):
        props: dict[str, Any] = schema.get("properties") or {}
        for name in schema.get("required") or []:
            if name in obj or name not in props:
                continue
            types = _schema_types(k8sdefs.resolve(props[name]))
            if types == {"integer"} or types == {"number"}:
                obj[name] = 0
            elif types == {"string"}:
                obj[name] = ""
            elif types == {"boolean"}:
                obj[name] = False
        for k, v in obj.items():
            if k in props and isinstance(v, (dict, list)):
                fill_required_zeros(v, props[k])
            elif isinstance(schema.get("additionalProperties"), dict) and isinstance(v, (dict, list)):
                fill_required_zeros(v, schema["additionalProperties"])
    elif isinstance(obj, list):
        items = schema.get("items")
        if isinstance(items, dict):
            for v in obj:
                if isinstance(v, (dict, list)):
                    fill_required_zeros(v, items)
