"""Decoding checks for built-in kinds against their upstream OpenAPI schemas.

A real API server decodes a built-in object into its Go struct: a JSON value of the wrong type
fails decoding (``400 BadRequest``, "... cannot be handled as a Pod: json: cannot unmarshal ...";
an integer field takes only an integer literal within its Go type, ``int32`` or ``int64``, so
``containerPort: 99999999999`` or ``replicas: 1e3`` is such a 400 too,
``staging/src/k8s.io/apiserver/pkg/endpoints/handlers/create.go`` via the serializer), and a
field the struct lacks is an unknown field, which ``fieldValidation`` decides about
(``Strict``: rejected; ``Warn``, the default: dropped with a warning; ``Ignore``: dropped;
``staging/src/k8s.io/apiserver/pkg/endpoints/handlers/rest.go``). kubesim walks the object along
the upstream schema (``k8sdefs``) to find both.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from . import gonum, k8sdefs


@dataclass
class DecodeReport:
    unknown: list[str] = field(default_factory=list)
    type_errors: list[str] = field(default_factory=list)


def json_kind(v: Any) -> str:
    """The JSON kind ``encoding/json`` names in an ``UnmarshalTypeError``'s ``Value``."""
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, int | float):
        return "number"
    if isinstance(v, str):
        return "string"
    if isinstance(v, list):
        return "array"
    if isinstance(v, dict):
        return "object"
    return type(v).__name__


def _fits(value: Any, types: set[str], fmt: str) -> bool:
    if not types:
        return True
    if isinstance(value, bool):
        return "boolean" in types
    if isinstance(value, int | float):
        if "number" in types:
            return True
        # literalStore: an integer field takes an integer literal that fits its Go type
        return "integer" in types and gonum.fits_int(value, fmt)
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


# Definitions with their own UnmarshalJSON whose number branch decodes into a narrower Go type.
_INT_FORMATS = {"io.k8s.apimachinery.pkg.util.intstr.IntOrString": "int32"}


def _int_format(schema: dict[str, Any]) -> str:
    name = k8sdefs.ref_name(schema)
    if name in _INT_FORMATS:
        return _INT_FORMATS[name]
    fmt = k8sdefs.resolve(schema).get("format")
    return fmt if fmt in ("int32", "int64") else "int64"


def go_type(schema: dict[str, Any]) -> str:
    """The Go type a schema stands for, as ``reflect.Type.String()`` prints it (``v1.PodSpec``,
    ``[]v1.Container``, ``map[string]string``, ``int32``)."""
    name = k8sdefs.ref_name(schema)
    if name is not None:
        pkg, typ = name.split(".")[-2:]
        return f"{pkg}.{typ}"
    types = _schema_types(schema)
    if types == {"integer"}:
        return _int_format(schema)
    if types == {"number"}:
        return "float64"
    if types == {"boolean"}:
        return "bool"
    if types == {"string"}:
        return "[]uint8" if schema.get("format") == "byte" else "string"
    if types == {"array"}:
        items = schema.get("items")
        return "[]" + (go_type(items) if isinstance(items, dict) else "interface {}")
    if types == {"object"}:
        addl = schema.get("additionalProperties")
        return "map[string]" + (go_type(addl) if isinstance(addl, dict) else "interface {}")
    return "interface {}"


def _short_name(schema: dict[str, Any], default: str) -> str:
    name = k8sdefs.ref_name(schema)
    return name.rsplit(".", 1)[-1] if name else default


def check(obj: Any, schema: dict[str, Any], struct: str = "") -> DecodeReport:
    """Walk ``obj`` along ``schema`` (the definition of the Go struct ``struct``, e.g. ``Pod``):
    unknown fields, and the values the Go decoder refuses, worded as ``encoding/json``'s
    ``UnmarshalTypeError``: ``cannot unmarshal <kind> into Go struct field <Struct>.<field path>
    of type <Go type>`` (the path without list indices, as Go 1.20+ prints it)."""
    report = DecodeReport()
    _walk(obj, schema, "", report, False, "", struct)
    return report


def drop_unknown(obj: Any, schema: dict[str, Any]) -> None:
    """Remove unknown fields in place (the decoder ignores them under Warn and Ignore)."""
    _walk(obj, schema, "", DecodeReport(), True, "", "")


def _walk(
    value: Any,
    schema: dict[str, Any],
    path: str,
    report: DecodeReport,
    drop: bool,
    go_path: str,
    struct: str,
) -> None:
    raw_schema = schema
    schema = k8sdefs.resolve(schema)
    if value is None:
        return  # null decodes to the zero value of any Go type
    types = _schema_types(schema)
    fmt = _int_format(raw_schema) if "integer" in types else ""
    if not _fits(value, types, fmt):
        kind = json_kind(value)
        if kind == "number" and "integer" in types:
            # literalStore: a number that does not parse as the integer type names its literal
            kind = f"number {gonum.literal(value)}"
            target = fmt
        else:
            target = go_type(raw_schema)
        where = f"Go struct field {struct}.{go_path}" if go_path else "Go value"
        report.type_errors.append(f"cannot unmarshal {kind} into {where} of type {target}")
        return
    if isinstance(value, dict) and "object" in types:
        props: dict[str, Any] = schema.get("properties") or {}
        addl = schema.get("additionalProperties")
        inner = _short_name(raw_schema, struct) if props else struct
        for k in list(value):
            sub = f"{path}.{k}"
            sub_go = f"{go_path}.{k}" if go_path else k
            if k in props:
                _walk(value[k], props[k], sub, report, drop, sub_go, inner)
            elif isinstance(addl, dict):
                _walk(value[k], addl, sub, report, drop, go_path, struct)
            elif addl is False or props:
                report.unknown.append(sub.lstrip("."))
                if drop:
                    del value[k]
    elif isinstance(value, list) and "array" in types:
        items = schema.get("items")
        if isinstance(items, dict):
            for i, v in enumerate(value):
                _walk(v, items, f"{path}[{i}]", report, drop, go_path, struct)


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
