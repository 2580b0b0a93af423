"""CustomResourceDefinition schemas: CRD validation, pruning, defaulting and custom-resource validation.

Pure functions (no I/O) that mirror kube-apiserver's apiextensions-apiserver, so that kubectl, Kopf
and the kubernetes client see the same 422s and the same stored objects as against a real cluster.
Upstream (kubernetes/kubernetes ``staging/src/k8s.io/apiextensions-apiserver``, unless noted):

- :func:`validate_crd` - ``pkg/apis/apiextensions/validation/validation.go:
  ValidateCustomResourceDefinition[Update]``, run on the *internal* form: per-version schemas,
  subresources and printer columns that are identical in every version are hoisted to
  ``spec.validation`` / ``spec.subresources`` / ``spec.additionalPrinterColumns``
  (``pkg/apis/apiextensions/v1/conversion.go:
  Convert_v1_CustomResourceDefinitionSpec_To_apiextensions_CustomResourceDefinitionSpec``), which is
  why a single-version CRD's errors read ``spec.validation.openAPIV3Schema...``. Structural schema
  rules are ``pkg/apiserver/schema/validation.go: ValidateStructural`` and ``complete.go``; defaults
  are checked by ``pkg/apiserver/schema/defaulting/validation.go: ValidateDefaults``; rules compile via
  :mod:`kubesim.cel`.
- :func:`prune` - ``pkg/apiserver/schema/pruning/algorithm.go: PruneWithOptions`` (unknown-field
  paths as ``pkg/apiserver/schema/options.go: UnknownFieldPathOptions`` builds them, sorted).
- :func:`apply_defaults` - ``pkg/apiserver/schema/defaulting/prunenulls.go:
  PruneNonNullableNullsWithoutDefaults`` then ``defaulting/algorithm.go: Default``.
- :func:`validate` - the custom-resource strategy (``pkg/registry/customresource/strategy.go:
  Validate/ValidateUpdate``, ``hasBlockingErr``): kube-openapi schema validation
  (``k8s.io/kube-openapi/pkg/validation/validate``, errors mapped by
  ``pkg/apiserver/validation/validation.go: kubeOpenAPIResultToFieldErrors``), embedded-resource
  apiVersion/kind (``pkg/apiserver/schema/objectmeta/validation.go``), list-type set/map uniqueness
  (``pkg/apiserver/schema/listtype/validation.go: ValidateListSetsAndMaps``) and then, unless a
  blocking error was found, the CEL rules.

Pipeline the server is expected to run for a custom resource write: :func:`prune` (report the paths
for ``fieldValidation=Strict``), :func:`apply_defaults`, :func:`validate` (pass the old object on
update). :func:`validate_crd` first decodes the CRD as the Go types would (:func:`decode_crd`: a
value of the wrong JSON type raises the 400 ``StatusError`` the apiserver returns, nulls and unknown
schema keywords are dropped) and applies the v1 CRD defaults (:func:`default_crd`,
``v1/defaults.go``); the server should store ``default_crd(decode_crd(crd))``.

Simplified or absent (for tests/kubesim/README.md): CEL cost estimation/limits; validation
ratcheting of unchanged fields (we are stricter); object-metadata coercion of embedded resources;
some string formats (isbn, creditcard, ssn, bsonobjectid, hexcolor, rgbcolor, quantity) are not
checked; anyOf/oneOf pick the alternative with fewest errors where kube-openapi counts matches;
``%#v`` dumps of internal structs (JSONSchemaProps) are abbreviated; webhook conversion client
configs are checked only for shape; CRD update relaxations for previously stored invalid schemas are
not modelled (we are stricter).
"""

from __future__ import annotations

import copy
import datetime
import ipaddress
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from kubesim import cel
from kubesim.cel import OMIT, CelCompileError, GoRaw, child, field_err, go_quote, index, key
from kubesim.errors import Cause, StatusError, bad_request

__all__ = [
    "StatusError",
    "apply_defaults",
    "decode_crd",
    "default_crd",
    "prune",
    "prune_nulls",
    "validate",
    "validate_crd",
    "validate_embedded_resources",
]

Schema = Mapping[str, Any]

# ---------------------------------------------------------------------------------------------
# k8s.io/apimachinery/pkg/util/validation: IsDNS1123Subdomain, IsDNS1035Label
# ---------------------------------------------------------------------------------------------

_DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_DNS1035_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")


def _regex_error(msg: str, fmt: str, *examples: str) -> str:
    """``RegexError`` (the doubled space after the first example is upstream's)."""
    if not examples:
        return f"{msg} (regex used for validation is '{fmt}')"
    msg += " (e.g. "
    for i, ex in enumerate(examples):
        if i > 0:
            msg += " or "
        msg += f"'{ex}', "
    return msg + f"regex used for validation is '{fmt}')"


def is_dns1123_subdomain(value: str) -> list[str]:
    errs = []
    if len(value) > 253:
        errs.append("must be no more than 253 characters")
    if not _DNS1123_SUBDOMAIN.match(value):
        errs.append(
            _regex_error(
                "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', "
                "and must start and end with an alphanumeric character",
                r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*",
                "example.com",
            )
        )
    return errs


def is_dns1035_label(value: str) -> list[str]:
    errs = []
    if len(value) > 63:
        errs.append("must be no more than 63 characters")
    if not _DNS1035_LABEL.match(value):
        errs.append(
            _regex_error(
                "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an "
                "alphabetic character, and end with an alphanumeric character",
                "[a-z]([-a-z0-9]*[a-z0-9])?",
                "my-name",
                "abc-123",
            )
        )
    return errs


# ---------------------------------------------------------------------------------------------
# Small helpers
# ---------------------------------------------------------------------------------------------


def _m(x: Any) -> Mapping[str, Any]:
    """``x`` if it is a JSON object, else an empty one (malformed input never raises)."""
    return x if isinstance(x, Mapping) else {}


def _props(s: Schema | None) -> Mapping[str, Any]:
    p = (s or {}).get("properties")
    return p if isinstance(p, Mapping) else {}


def _items(s: Schema | None) -> Schema | None:
    it = (s or {}).get("items")
    return it if isinstance(it, Mapping) else None


def _ap_schema(s: Schema | None) -> Schema | None:
    ap = (s or {}).get("additionalProperties")
    return ap if isinstance(ap, Mapping) else None


def _truthy(s: Schema, name: str) -> bool:
    return bool(s.get(name))


def _invalid(path: str, value: Any, detail: str) -> Cause:
    return field_err("FieldValueInvalid", path, value=value, detail=detail)


def _required(path: str, detail: str = "") -> Cause:
    return field_err("FieldValueRequired", path, detail=detail)


def _forbidden(path: str, detail: str) -> Cause:
    return field_err("FieldValueForbidden", path, detail=detail)


def _not_supported(path: str, value: Any, valid: Sequence[str]) -> Cause:
    detail = "supported values: " + ", ".join(go_quote(v) for v in valid) if valid else ""
    return field_err("FieldValueNotSupported", path, value=value, detail=detail)


def _json_equal(a: Any, b: Any) -> bool:
    """Semantic equality of unstructured JSON values (1 == 1.0, but True != 1)."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return float(a) == float(b)
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        return a.keys() == b.keys() and all(_json_equal(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_json_equal(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and bool(a == b)


def _compile_regex(pattern: str) -> Any:
    """Go's regexp is RE2 (``cel.compile_regex``)."""
    return cel.compile_regex(pattern)


# ---------------------------------------------------------------------------------------------
# Pruning (pruning/algorithm.go) and defaulting (defaulting/algorithm.go, prunenulls.go)
# ---------------------------------------------------------------------------------------------

_META_FIELDS = frozenset({"apiVersion", "kind", "metadata"})


def prune(obj: Any, schema: Schema, *, root: bool = True) -> tuple[Any, list[str]]:
    """Drop fields the structural schema does not specify; return the pruned copy and the pruned paths.

    At a resource root (``root=True``) and inside ``x-kubernetes-embedded-resource`` objects,
    ``apiVersion``, ``kind`` and ``metadata`` are kept. The paths (``spec.foo``,
    ``spec.items[0].bar``) are what ``fieldValidation=Strict`` reports as ``unknown field "..."``.
    """
    out = copy.deepcopy(obj)
    s: dict[str, Any] = dict(schema) if schema is not None else {}
    if root and not s.get("x-kubernetes-embedded-resource"):
        s["x-kubernetes-embedded-resource"] = True
    paths: list[str] = []
    _prune(out, s, "", paths)
    return out, sorted(paths)


def _prune(x: Any, s: Schema | None, path: str, pruned: list[str]) -> None:
    if s is not None and s.get("x-kubernetes-preserve-unknown-fields"):
        _skip_prune(x, s, path, pruned)
        return
    if isinstance(x, dict):
        if s is None:
            for k in list(x):
                pruned.append(child(path, k))
                del x[k]
            return
        props = _props(s)
        for k in list(x):
            if s.get("x-kubernetes-embedded-resource") and k in _META_FIELDS:
                continue
            if k in props:
                _prune(x[k], props[k], child(path, k), pruned)
            elif s.get("additionalProperties") is not None:
                _prune(x[k], _ap_schema(s), child(path, k), pruned)
            else:
                if k not in _META_FIELDS or path:
                    pruned.append(child(path, k))
                del x[k]
    elif isinstance(x, list):
        items = None if s is None else _items(s)
        for i, v in enumerate(x):
            _prune(v, items, index(path, i), pruned)


def _skip_prune(x: Any, s: Schema | None, path: str, pruned: list[str]) -> None:
    if s is None:
        return
    if isinstance(x, dict):
        props = _props(s)
        for k, v in x.items():
            if s.get("x-kubernetes-embedded-resource") and k in _META_FIELDS:
                continue
            if k in props:
                _prune(v, props[k], child(path, k), pruned)
            elif s.get("additionalProperties") is not None:
                _prune(v, _ap_schema(s), child(path, k), pruned)
    elif isinstance(x, list):
        for i, v in enumerate(x):
            _skip_prune(v, _items(s), index(path, i), pruned)


def _field_schema(k: str, s: Schema | None) -> Schema | None:
    if s is None:
        return None
    props = _props(s)
    if k in props:
        return props[k]  # type: ignore[no-any-return]
    return _ap_schema(s) if s.get("additionalProperties") is not None else None


def prune_nulls(obj: Any, schema: Schema | None) -> Any:
    """``PruneNonNullableNullsWithoutDefaults`` (in place; returns ``obj``)."""
    if isinstance(obj, dict):
        for k in list(obj):
            sub = _field_schema(k, schema)
            if obj[k] is None and sub is not None and not sub.get("nullable") and sub.get("default") is None:
                del obj[k]
            else:
                prune_nulls(obj[k], sub)
    elif isinstance(obj, list):
        for v in obj:
            prune_nulls(v, _items(schema))
    return obj


def _non_nullable_null(x: Any, s: Schema | None) -> bool:
    return x is None and s is not None and not s.get("nullable")


def _default(x: Any, s: Schema | None) -> None:
    if s is None:
        return
    if isinstance(x, dict):
        props = _props(s)
        for k, prop in props.items():
            if prop.get("default") is None:
                continue
            if k not in x or _non_nullable_null(x[k], prop):
                x[k] = copy.deepcopy(prop["default"])
        ap = _ap_schema(s)
        for k in list(x):
            if k in props:
                _default(x[k], props[k])
            elif ap is not None:
                if _non_nullable_null(x[k], ap) and ap.get("default") is not None:
                    x[k] = copy.deepcopy(ap["default"])
                _default(x[k], ap)
    elif isinstance(x, list):
        items = _items(s)
        for i in range(len(x)):
            if _non_nullable_null(x[i], items) and items is not None and items.get("default") is not None:
                x[i] = copy.deepcopy(items["default"])
            _default(x[i], items)


def apply_defaults(obj: Any, schema: Schema) -> Any:
    """Structural defaulting of a copy of ``obj``: absent fields (and non-nullable nulls) get defaults.

    Non-nullable nulls without a default are dropped first, as the apiserver does right after
    pruning. Defaults apply recursively: in properties, array items and additionalProperties.
    """
    out = copy.deepcopy(obj)
    prune_nulls(out, schema)
    _default(out, schema)
    return out


# ---------------------------------------------------------------------------------------------
# kube-openapi schema validation (k8s.io/kube-openapi/pkg/validation/validate)
# ---------------------------------------------------------------------------------------------


@dataclass
class _OAErr:
    """One kube-openapi ``errors.Validation`` (``code``) or composite ``apiError`` (``code="composite"``)."""

    code: str
    name: str
    message: str
    value: Any = OMIT
    values: list[Any] = field(default_factory=list)
    valid: Any = None


# formats.go: supportedVersionedFormats (names normalised without "-")
_SUPPORTED_STRING_FORMATS = frozenset(
    [
        "bsonobjectid",
        "uri",
        "email",
        "hostname",
        "ipv4",
        "ipv6",
        "cidr",
        "mac",
        "uuid",
        "uuid3",
        "uuid4",
        "uuid5",
        "isbn",
        "isbn10",
        "isbn13",
        "creditcard",
        "ssn",
        "hexcolor",
        "rgbcolor",
        "byte",
        "password",
        "date",
        "duration",
        "datetime",
        "quantity",
    ]
)


def _oa_types(s: Schema) -> list[str]:
    if s.get("x-kubernetes-int-or-string"):
        return ["integer", "string"]
    t = s.get("type")
    return [t] if t else []


def _oa_format(s: Schema, types: Sequence[str]) -> str:
    """``StripUnsupportedFormatsPostProcess``."""
    fmt = str(s.get("format") or "")
    if not fmt:
        return ""
    t = types[0] if len(types) == 1 else ""
    if t in ("", "string"):
        return fmt if fmt.replace("-", "") in _SUPPORTED_STRING_FORMATS else ""
    if t == "integer":
        return fmt if fmt in ("int32", "int64") else ""
    if t == "number":
        return fmt if fmt in ("float", "double") else ""
    return ""


def _sch_type(data: Any) -> tuple[str, str]:
    if isinstance(data, bool):
        return "boolean", ""
    if isinstance(data, int):
        return "integer", "int64"
    if isinstance(data, float):
        return "number", "float64"
    if isinstance(data, str):
        return "string", ""
    if isinstance(data, list):
        return "array", ""
    if isinstance(data, Mapping):
        return "object", ""
    return "", ""


def _is_json_integer(f: float) -> bool:
    return math.isfinite(f) and f.is_integer() and abs(f) <= 2**53


def _invalid_type(name: str, typ: str, value: Any) -> _OAErr:
    """``errors.InvalidType`` with ``in: body``."""
    if isinstance(value, str):
        msg = f"{name} in body must be of type {typ}: {go_quote(value)}"
    else:
        msg = f"{name} in body must be of type {typ}"
    return _OAErr("invalid_type", name, msg, value=value)


def _type_check(data: Any, s: Schema, types: Sequence[str], fmt: str, path: str) -> list[_OAErr]:
    """``typeValidator.Validate``."""
    if data is None:
        if types and not s.get("nullable"):
            return [_invalid_type(path, ",".join(types), "null")]
        return []
    sch_type, data_fmt = _sch_type(data)
    is_float_int = sch_type == "number" and _is_json_integer(float(data)) and "integer" in types
    is_int_float = sch_type == "integer" and "number" in types
    is_str_or_list = isinstance(data, (str, list))
    if (
        not is_str_or_list
        and fmt
        and not (sch_type in types or data_fmt == fmt or is_float_int or is_int_float)
    ):
        return [_invalid_type(path, fmt, data_fmt)]
    if "number" not in types and "integer" not in types and fmt and is_str_or_list:
        return []
    if not (sch_type in types or is_float_int or is_int_float):
        return [_invalid_type(path, ",".join(types), sch_type)]
    return []


def _is_date(s: str) -> bool:
    """``strfmt.IsDate``: ``time.Parse("2006-01-02", s)``."""
    if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", s):
        return False
    try:
        datetime.date.fromisoformat(s)
    except ValueError:
        return False
    return True


_RX_DATETIME_TIME = re.compile(r"^([0-9]{2}):([0-9]{2}):([0-9]{2})(.[0-9]+)?(z|([+-][0-9]{2}:[0-9]{2}))$")


def _is_datetime(s: str) -> bool:
    """``strfmt.IsDateTime``: full-date, a ``t``, a time with a zone (case-insensitive)."""
    if len(s) < 4:
        return False
    parts = s.lower().split("t")
    if len(parts) < 2 or not _is_date(parts[0]):
        return False
    m = _RX_DATETIME_TIME.match(parts[1])
    return bool(m and m.group(1) <= "23" and m.group(2) <= "59" and m.group(3) <= "59")


_RX_BASE64 = re.compile(r"^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=|[A-Za-z0-9+/]{4})$")
_RX_UUID = {
    "uuid": r"(?i)^[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}$",
    "uuid3": r"(?i)^[0-9a-f]{8}-?[0-9a-f]{4}-?3[0-9a-f]{3}-?[0-9a-f]{4}-?[0-9a-f]{12}$",
    "uuid4": r"(?i)^[0-9a-f]{8}-?[0-9a-f]{4}-?4[0-9a-f]{3}-?[89ab][0-9a-f]{3}-?[0-9a-f]{12}$",
    "uuid5": r"(?i)^[0-9a-f]{8}-?[0-9a-f]{4}-?5[0-9a-f]{3}-?[89ab][0-9a-f]{3}-?[0-9a-f]{12}$",
}
_RX_HOSTNAME = (
    r"^([a-zA-Z0-9\p{S}\p{L}]((-?[a-zA-Z0-9\p{S}\p{L}]{0,62})?)|([a-zA-Z0-9\p{S}\p{L}](([a-zA-Z0-9-\p{S}\p{L}]{0,61}"
    r"[a-zA-Z0-9\p{S}\p{L}])?)(\.)){1,}([a-zA-Z0-9\p{S}\p{L}])(-?[a-zA-Z0-9\p{S}\p{L}]){1,62})$"
)
_RX_DURATION = re.compile(
    r"^(\d+(\.\d+)?\s*(ns|us|µs|ms|s|m|h|d|w|nanoseconds?|microseconds?|milliseconds?|seconds?|minutes?|hours?"
    r"|days?|weeks?)\s*)+$"
)
_RX_MAC = re.compile(
    r"^([0-9a-fA-F]{2}([:-])[0-9a-fA-F]{2}(\2[0-9a-fA-F]{2}){4}((\2[0-9a-fA-F]{2}){2})?((\2[0-9a-fA-F]{2}){12})?"
    r"|[0-9a-fA-F]{4}\.[0-9a-fA-F]{4}\.[0-9a-fA-F]{4}(\.[0-9a-fA-F]{4})?((\.[0-9a-fA-F]{4}){5})?)$"
)


def _ip(s: str, version: int) -> bool:
    try:
        return ipaddress.ip_address(s).version == version
    except ValueError:
        return False


def _cidr(s: str) -> bool:
    try:
        ipaddress.ip_network(s, strict=False)
    except ValueError:
        return False
    return "/" in s


def _hostname(s: str) -> bool:
    """``strfmt.IsHostname`` (RE2 understands the \\p{S}/\\p{L} classes)."""
    if len(s) > 255 or any(len(p) > 63 for p in s.split(".")):
        return False
    return bool(_compile_regex(_RX_HOSTNAME).search(s))


def _uri(s: str) -> bool:
    """``url.ParseRequestURI``: an absolute URI or an absolute path."""
    if not s or " " in s:
        return False
    if s.startswith("/"):
        return True
    parts = urlsplit(s)
    return bool(parts.scheme) and re.fullmatch(r"[A-Za-z][A-Za-z0-9+.-]*", parts.scheme) is not None


_FORMAT_CHECKS: dict[str, Callable[[str], bool]] = {
    "datetime": _is_datetime,
    "date": _is_date,
    "byte": lambda s: bool(_RX_BASE64.match(s)),
    "password": lambda s: True,
    "uuid": lambda s: bool(re.match(_RX_UUID["uuid"], s)),
    "uuid3": lambda s: bool(re.match(_RX_UUID["uuid3"], s)),
    "uuid4": lambda s: bool(re.match(_RX_UUID["uuid4"], s)),
    "uuid5": lambda s: bool(re.match(_RX_UUID["uuid5"], s)),
    "ipv4": lambda s: _ip(s, 4),
    "ipv6": lambda s: _ip(s, 6),
    "cidr": _cidr,
    "mac": lambda s: bool(_RX_MAC.match(s)),
    "hostname": _hostname,
    "email": lambda s: bool(re.fullmatch(r"[^@\s<>]+@[^@\s<>]+", s.strip("<>"))),
    "uri": _uri,
    "duration": lambda s: bool(_RX_DURATION.match(s.strip())),
}


def _go_num(v: Any) -> str:
    return cel.go_value(v)


def _number_check(data: Any, s: Schema, path: str) -> list[_OAErr]:
    """``numberValidator.Validate`` (multipleOf, minimum, maximum in that order)."""
    errs: list[_OAErr] = []
    is_int = isinstance(data, int)
    mult = s.get("multipleOf")
    if isinstance(mult, (int, float)) and not isinstance(mult, bool) and mult > 0:
        if is_int and int(mult) != 0:
            bad = data % int(mult) != 0
            shown = _go_num(int(mult))
        else:
            ratio = float(data) / float(mult) if mult >= 1 else (1 / float(mult)) * float(data)
            bad = abs(ratio - round(ratio)) > 1e-9
            shown = _go_num(float(mult))
        if bad:
            errs.append(_OAErr("other", path, f"{path} in body should be a multiple of {shown}", value=data))
    bounds = (
        ("minimum", "exclusiveMinimum", "greater than or equal to", "greater than", -1),
        ("maximum", "exclusiveMaximum", "less than or equal to", "less than", 1),
    )
    for bound, excl_key, inc_word, exc_word, sign in bounds:
        limit = s.get(bound)
        if not isinstance(limit, (int, float)) or isinstance(limit, bool):
            continue
        exclusive = bool(s.get(excl_key))
        lim: int | float = int(limit) if is_int else float(limit)
        over = (data - lim) * sign  # > 0 beyond the bound, == 0 on it
        if over > 0 or (exclusive and over == 0):
            word = exc_word if exclusive else inc_word
            errs.append(_OAErr("other", path, f"{path} in body should be {word} {_go_num(lim)}", value=data))
    return errs


def _string_check(data: str, s: Schema, fmt: str, path: str) -> list[_OAErr]:
    """``stringValidator`` (maxLength, minLength, pattern; stops at the first) and ``formatValidator``."""
    errs: list[_OAErr] = []
    max_len, min_len, pattern = s.get("maxLength"), s.get("minLength"), s.get("pattern")
    if isinstance(max_len, int) and len(data) > max_len:
        errs.append(
            _OAErr(
                "too_long",
                path,
                f"{path} in body should be at most {max_len} chars long",
                value=data,
                valid=max_len,
            )
        )
    elif isinstance(min_len, int) and len(data) < min_len:
        errs.append(
            _OAErr("other", path, f"{path} in body should be at least {min_len} chars long", value=data)
        )
    elif isinstance(pattern, str) and pattern:
        try:
            matched = _compile_regex(pattern).search(data) is not None
            shown = pattern
        except Exception as ex:  # re and re2 raise different error classes
            matched, shown = False, f"{pattern}, but pattern is invalid: {ex}"
        if not matched:
            errs.append(_OAErr("other", path, f"{path} in body should match '{shown}'", value=data))
    norm = fmt.replace("-", "")
    if norm in _SUPPORTED_STRING_FORMATS:
        check = _FORMAT_CHECKS.get(norm)
        if check is not None and not check(data):
            errs.append(_invalid_type(path, fmt, data))
    return errs


def _enum_check(data: Any, s: Schema, path: str) -> list[_OAErr]:
    """``basicCommonValidator``: a null never matches an enum (upstream quirk kept)."""
    enum = s.get("enum")
    if not enum:
        return []
    if data is not None and any(e is not None and _json_equal(data, e) for e in enum):
        return []
    shown = "[" + " ".join(cel.go_sharp(e) if not isinstance(e, str) else e for e in enum) + "]"
    return [_OAErr("enum", path, f"{path} in body should be one of {shown}", value=data, values=list(enum))]


def _slice_check(data: list[Any], s: Schema, path: str) -> list[_OAErr]:
    """``schemaSliceValidator``: items, then minItems, maxItems, uniqueItems."""
    errs: list[_OAErr] = []
    items = _items(s)
    if items is not None:
        for i, v in enumerate(data):
            errs.extend(_oa_validate(v, items, f"{path}[{i}]"))
    size = len(data)
    min_items, max_items = s.get("minItems"), s.get("maxItems")
    if isinstance(min_items, int) and size < min_items:
        errs.append(
            _OAErr("other", path, f"{path} in body should have at least {min_items} items", value=size)
        )
    if isinstance(max_items, int) and size > max_items:
        errs.append(
            _OAErr(
                "max_items",
                path,
                f"{path} in body should have at most {max_items} items",
                value=size,
                valid=max_items,
            )
        )
    if s.get("uniqueItems"):
        seen: list[Any] = []
        for v in data:
            if any(_json_equal(v, w) for w in seen):
                errs.append(_OAErr("other", path, f"{path} in body shouldn't contain duplicates"))
                break
            seen.append(v)
    return errs


def _object_check(data: Mapping[str, Any], s: Schema, path: str) -> list[_OAErr]:
    """``objectValidator.Validate``."""
    n = len(data)
    min_p, max_p = s.get("minProperties"), s.get("maxProperties")
    if isinstance(min_p, int) and n < min_p:
        return [_OAErr("other", path, f"{path} in body should have at least {min_p} properties", value=n)]
    if isinstance(max_p, int) and n > max_p:
        return [
            _OAErr(
                "too_many_props",
                path,
                f"{path} in body should have at most {max_p} properties",
                value=n,
                valid=max_p,
            )
        ]
    errs: list[_OAErr] = []
    props = _props(s)
    ap = s.get("additionalProperties")
    if ap is False:
        for k in data:
            if k not in props:
                errs.append(_OAErr("other", path, f"{path}.{k} in body is a forbidden property", value=k))
    elif isinstance(ap, Mapping):
        for k, v in data.items():
            if k not in props:
                errs.extend(_oa_validate(v, ap, f"{path}.{k}"))
    for name, sub in props.items():
        if name in data:
            errs.extend(_oa_validate(data[name], sub, name if not path else f"{path}.{name}"))
    for req in s.get("required") or []:
        if req not in data:
            errs.append(_OAErr("required", f"{path}.{req}", f"{path}.{req} in body is required"))
    return errs


def _schema_props_check(data: Any, s: Schema, path: str) -> list[_OAErr]:
    """``schemaPropsValidator``: anyOf, oneOf, allOf, not (composite errors name the path quoted)."""
    errs: list[_OAErr] = []

    def best(results: list[list[_OAErr]]) -> list[_OAErr]:
        return min(results, key=len) if results else []

    any_of = s.get("anyOf") or []
    if any_of:
        results = [_oa_validate(data, sub, path) for sub in any_of]
        if not any(not r for r in results):
            errs.append(
                _OAErr("composite", path, f"{go_quote(path)} must validate at least one schema (anyOf)")
            )
            errs.extend(best(results))
    one_of = s.get("oneOf") or []
    if one_of:
        results = [_oa_validate(data, sub, path) for sub in one_of]
        valid = sum(1 for r in results if not r)
        if valid != 1:
            extra = "Found none valid" if valid == 0 else f"Found {valid} valid alternatives"
            errs.append(
                _OAErr(
                    "composite",
                    path,
                    f"{go_quote(path)} must validate one and only one schema (oneOf). {extra}",
                )
            )
            if valid == 0:
                errs.extend(best(results))
    all_of = s.get("allOf") or []
    if all_of:
        results = [_oa_validate(data, sub, path) for sub in all_of]
        for r in results:
            errs.extend(r)
        valid = sum(1 for r in results if not r)
        if valid != len(all_of):
            extra = ". None validated" if valid == 0 else ""
            errs.append(
                _OAErr("composite", path, f"{go_quote(path)} must validate all the schemas (allOf){extra}")
            )
    not_ = s.get("not")
    if isinstance(not_, Mapping) and not _oa_validate(data, not_, path):
        errs.append(_OAErr("composite", path, f"{go_quote(path)} must not validate the schema (not)"))
    return errs


def _oa_validate(data: Any, s: Schema, path: str) -> list[_OAErr]:
    """``SchemaValidator.Validate``: the validators in upstream order, each applying by data kind."""
    types = _oa_types(s)
    fmt = _oa_format(s, types)
    errs: list[_OAErr] = []
    if data is None:
        if types or fmt:
            errs.extend(_type_check(None, s, types, fmt, path))
        errs.extend(_enum_check(None, s, path))
        return errs
    if types or fmt:
        errs.extend(_type_check(data, s, types, fmt, path))
    errs.extend(_schema_props_check(data, s, path))
    if isinstance(data, str):
        errs.extend(_string_check(data, s, fmt, path))
    if isinstance(data, (int, float)) and not isinstance(data, bool):
        errs.extend(_number_check(data, s, path))
    if isinstance(data, list):
        errs.extend(_slice_check(data, s, path))
    errs.extend(_enum_check(data, s, path))
    if isinstance(data, Mapping):
        errs.extend(_object_check(data, s, path))
    return errs


def _oa_causes(fld: str, errs: Sequence[_OAErr]) -> list[Cause]:
    """``kubeOpenAPIResultToFieldErrors``."""
    out: list[Cause] = []
    for e in errs:
        if e.code == "composite":
            out.append(_invalid(fld, "", e.message))
            continue
        p = fld
        if e.name and e.name != ".":
            p = child(fld, e.name[1:] if e.name.startswith(".") else e.name)
        value: Any = "" if isinstance(e.value, cel._Omit) else e.value
        if e.code == "required":
            out.append(_required(p))
        elif e.code == "enum":
            shown = [v if isinstance(v, str) else _json_text(v) for v in e.values]
            out.append(_not_supported(p, value, shown))
        elif e.code == "too_long":
            n = e.valid if isinstance(e.valid, int) else -1
            unit = "byte" if n == 1 else "bytes"
            detail = f"may not be more than {n} {unit}" if n >= 0 else "value is too long"
            out.append(field_err("FieldValueTooLong", p, detail=detail))
        elif e.code in ("max_items", "too_many_props"):
            actual = e.value if isinstance(e.value, int) else -1
            n = e.valid if isinstance(e.valid, int) else -1
            detail = f"must have at most {n} items" if n >= 0 else "has too many items"
            out.append(
                field_err("FieldValueTooMany", p, value=actual if actual >= 0 else OMIT, detail=detail)
            )
        elif e.code == "invalid_type":
            out.append(field_err("FieldValueTypeInvalid", p, value=value, detail=e.message))
        else:
            out.append(_invalid(p, value, e.message))
    return out


def _json_text(v: Any) -> str:
    import json

    return json.dumps(v, separators=(",", ":"), sort_keys=True)


def openapi_validate(obj: Any, schema: Schema, path: str = "") -> list[Cause]:
    """``ValidateCustomResource(fldPath, obj, NewSchemaValidator(schema))``."""
    return _oa_causes(path, _oa_validate(obj, schema, ""))


# ---------------------------------------------------------------------------------------------
# objectmeta/validation.go (embedded resources) and listtype/validation.go
# ---------------------------------------------------------------------------------------------


def validate_embedded_resources(obj: Any, schema: Schema | None, path: str = "") -> list[Cause]:
    """apiVersion/kind of ``x-kubernetes-embedded-resource`` objects below the root."""
    errs: list[Cause] = []
    if isinstance(obj, Mapping) and schema is not None:
        if schema.get("x-kubernetes-embedded-resource") and path:
            errs.extend(_validate_embedded(obj, path))
        ap = _ap_schema(schema)
        props = _props(schema)
        for k, v in obj.items():
            if k in props:
                errs.extend(validate_embedded_resources(v, props[k], child(path, k)))
            elif ap is not None:
                errs.extend(validate_embedded_resources(v, ap, child(path, k)))
    elif isinstance(obj, list) and schema is not None:
        for i, v in enumerate(obj):
            errs.extend(validate_embedded_resources(v, _items(schema), index(path, i)))
    return errs


def _validate_embedded(x: Mapping[str, Any], path: str) -> list[Cause]:
    errs: list[Cause] = []
    if "apiVersion" not in x:
        errs.append(_required(child(path, "apiVersion"), "must not be empty"))
    if "kind" not in x:
        errs.append(_required(child(path, "kind"), "must not be empty"))
    for k, v in x.items():
        if k == "apiVersion":
            if not isinstance(v, str):
                errs.append(_invalid(child(path, "apiVersion"), v, "must be a string"))
            elif not v:
                errs.append(_invalid(child(path, "apiVersion"), v, "must not be empty"))
            elif v.count("/") > 1:
                errs.append(_invalid(child(path, "apiVersion"), v, f"unexpected GroupVersion string: {v}"))
        elif k == "kind":
            if not isinstance(v, str):
                errs.append(_invalid(child(path, "kind"), v, "must be a string"))
            elif not v:
                errs.append(_invalid(child(path, "kind"), v, "must not be empty"))
            elif problems := is_dns1035_label(v.lower()):
                errs.append(
                    _invalid(
                        child(path, "kind"),
                        v,
                        "may have mixed case, but should otherwise match: " + ",".join(problems),
                    )
                )
    return errs


def _list_set_nonunique(items: Sequence[Any]) -> list[int]:
    seen: dict[str, int] = {}
    out: list[int] = []
    for i, x in enumerate(items):
        k = _json_text(x) if not isinstance(x, _Unspecified) else "\x00unspecified"
        times = seen.get(k, 0)
        seen[k] = times + 1
        if times == 1:
            out.append(i)
    return out


class _Unspecified:
    """``unspecifiedKeyValue``."""


def validate_list_sets_and_maps(obj: Any, schema: Schema | None, path: str = "") -> list[Cause]:
    """``ValidateListSetsAndMaps``: uniqueness of set elements and of map-list keys."""
    errs: list[Cause] = []
    if schema is None:
        return errs
    if isinstance(obj, Mapping):
        ap = _ap_schema(schema)
        props = _props(schema)
        if ap is not None:
            for k, v in obj.items():
                errs.extend(validate_list_sets_and_maps(v, ap, key(path, k)))
        for k, v in obj.items():
            if k in props:
                errs.extend(validate_list_sets_and_maps(v, props[k], child(path, k)))
    elif isinstance(obj, list):
        list_type = schema.get("x-kubernetes-list-type")
        if list_type == "set":
            for i in _list_set_nonunique(obj):
                errs.append(field_err("FieldValueDuplicate", index(path, i), value=obj[i]))
        elif list_type == "map":
            errs.extend(_validate_list_map(obj, schema, path))
        items = _items(schema)
        if items is not None:
            for i, v in enumerate(obj):
                errs.extend(validate_list_sets_and_maps(v, items, index(path, i)))
    return errs


def _validate_list_map(obj: list[Any], schema: Schema, path: str) -> list[Cause]:
    for i, x in enumerate(obj):
        if x is not None and not isinstance(x, Mapping):
            return [_invalid(index(path, i), x, "must be an object for an array of list-type map")]
    if len(obj) <= 1:
        return []
    keys: list[str] = list(schema.get("x-kubernetes-list-map-keys") or [])
    errs: list[Cause] = []
    if len(keys) == 1:
        kf = keys[0]
        vals: list[Any] = [x[kf] if isinstance(x, Mapping) and kf in x else _Unspecified() for x in obj]
        for i in _list_set_nonunique(vals):
            shown = {} if isinstance(vals[i], _Unspecified) else {kf: vals[i]}
            errs.append(field_err("FieldValueDuplicate", index(path, i), value=shown))
        return errs
    composite = [{k: x[k] for k in keys if k in x} if isinstance(x, Mapping) else {} for x in obj]
    for i in _list_set_nonunique(composite):
        errs.append(field_err("FieldValueDuplicate", index(path, i), value=composite[i]))
    return errs


# ---------------------------------------------------------------------------------------------
# Custom resource validation (registry/customresource/strategy.go)
# ---------------------------------------------------------------------------------------------

_BLOCKING = {
    "FieldValueNotSupported",
    "FieldValueRequired",
    "FieldValueTooLong",
    "FieldValueTooMany",
    "FieldValueTypeInvalid",
}


def validate(obj: Any, schema: Schema, old: Any | None = None) -> list[Cause]:
    """Validate a (pruned, defaulted) custom resource against its version's schema.

    OpenAPI value validation, embedded resources and list-type uniqueness first; the CEL rules run
    only when none of those found a type/required/enum/size violation, otherwise upstream's
    ``<nil>: Invalid value: "null": some validation rules were not checked ...`` is appended.
    """
    errs = openapi_validate(obj, schema)
    errs.extend(validate_embedded_resources(obj, schema))
    errs.extend(validate_list_sets_and_maps(obj, schema))
    if _has_rules(schema):
        if any(e.type in _BLOCKING for e in errs):
            errs.append(
                _invalid(
                    "",
                    None,
                    "some validation rules were not checked because the object was invalid; "
                    "correct the existing errors to complete validation",
                )
            )
        else:
            errs.extend(cel.evaluate_validations(obj, schema, old, ""))
    return errs


def _has_rules(s: Any) -> bool:
    if not isinstance(s, Mapping):
        return False
    if s.get("x-kubernetes-validations"):
        return True
    return (
        _has_rules(s.get("items"))
        or _has_rules(s.get("additionalProperties"))
        or any(_has_rules(p) for p in _props(s).values())
    )


# ---------------------------------------------------------------------------------------------
# Structural schemas (schema/validation.go: ValidateStructural; complete.go; convert.go)
# ---------------------------------------------------------------------------------------------

_ROOT, _ITEM, _FIELD = 0, 1, 2
_INT_OR_STRING_ANYOF = [{"type": "integer"}, {"type": "string"}]
_UNSUPPORTED = (
    "id",
    "$schema",
    "$ref",
    "patternProperties",
    "dependencies",
    "additionalItems",
    "definitions",
)


def _buildable(s: Any) -> bool:
    """Whether ``NewStructural`` would succeed (it rejects what ssv.validate reports as forbidden)."""
    if not isinstance(s, Mapping):
        return True
    if any(s.get(k) for k in _UNSUPPORTED) or s.get("x-kubernetes-preserve-unknown-fields") is False:
        return False
    if isinstance(s.get("items"), list):
        return False
    subs: list[Any] = [s.get("items"), s.get("not"), s.get("additionalProperties")]
    subs += list(_props(s).values())
    for k in ("allOf", "anyOf", "oneOf"):
        subs += list(s.get(k) or [])
    return all(_buildable(x) for x in subs)


def _is_int_or_string_anyof(s: Schema) -> bool:
    return list(s.get("anyOf") or []) == _INT_OR_STRING_ANYOF


def _is_int_or_string_allof(s: Schema) -> bool:
    all_of = s.get("allOf") or []
    return bool(all_of) and isinstance(all_of[0], Mapping) and _is_int_or_string_anyof(all_of[0])


def validate_structural(path: str, s: Schema) -> list[Cause]:
    """``ValidateStructural``: invariants plus completeness, errors sorted by message."""
    errs: list[Cause] = []
    _structural_invariants(s, _ROOT, path, errs)
    _value_validation_completeness(s, s, path, path, errs)
    return sorted(errs, key=lambda c: c.message)


def _structural_invariants(s: Schema | None, lvl: int, path: str, errs: list[Cause]) -> None:
    if s is None:
        return
    t = s.get("type", "") or ""
    if t == "array" and s.get("items") is None:
        errs.append(_required(child(path, "items"), "must be specified"))
    _structural_invariants(_items(s), _ITEM, child(path, "items"), errs)
    for k, v in _props(s).items():
        _structural_invariants(v, _FIELD, key(child(path, "properties"), k), errs)
    if s.get("additionalProperties") is not None:
        if lvl == _ROOT:
            errs.append(_forbidden(child(path, "additionalProperties"), "must not be used at the root"))
        _structural_invariants(_ap_schema(s), _FIELD, child(path, "additionalProperties"), errs)
    if s.get("x-kubernetes-int-or-string") and s.get("x-kubernetes-preserve-unknown-fields"):
        errs.append(
            _invalid(
                child(path, "x-kubernetes-preserve-unknown-fields"),
                True,
                "must be false if x-kubernetes-int-or-string is true",
            )
        )
    if s.get("x-kubernetes-int-or-string") and s.get("x-kubernetes-embedded-resource"):
        errs.append(
            _invalid(
                child(path, "x-kubernetes-embedded-resource"),
                True,
                "must be false if x-kubernetes-int-or-string is true",
            )
        )
    _value_validation(s, _is_int_or_string_anyof(s), _is_int_or_string_allof(s), lvl, path, errs)
    embedded = bool(s.get("x-kubernetes-embedded-resource"))
    check_metadata = lvl == _ROOT or embedded
    if embedded and t != "object":
        msg = "must be object if x-kubernetes-embedded-resource is true"
        errs.append(_required(child(path, "type"), msg) if not t else _invalid(child(path, "type"), t, msg))
    elif (
        not t
        and not s.get("x-kubernetes-int-or-string")
        and not s.get("x-kubernetes-preserve-unknown-fields")
    ):
        where = {
            _ROOT: "at the root",
            _ITEM: "for specified array items",
            _FIELD: "for specified object fields",
        }[lvl]
        errs.append(_required(child(path, "type"), f"must not be empty {where}"))
    if embedded and s.get("additionalProperties") is not None:
        errs.append(
            _forbidden(
                child(path, "additionalProperties"),
                "must not be used if x-kubernetes-embedded-resource is set",
            )
        )
    if lvl == _ROOT and t and t != "object":
        errs.append(_invalid(child(path, "type"), t, "must be object at the root"))
    props = _props(s)
    for name in ("kind", "apiVersion"):
        if name in props and check_metadata and props[name].get("type", "") != "string":
            errs.append(
                _invalid(
                    child(key(child(path, "properties"), name), "type"),
                    props[name].get("type", ""),
                    "must be string",
                )
            )
    if "metadata" in props:
        _metadata_invariants(
            props["metadata"], check_metadata, lvl, key(child(path, "properties"), "metadata"), errs
        )
    if embedded and not s.get("x-kubernetes-preserve-unknown-fields") and not props:
        errs.append(
            _required(
                child(path, "properties"),
                "must not be empty if x-kubernetes-embedded-resource is true without x-kubernetes-preserve-unknown-fields",
            )
        )


def _metadata_invariants(s: Schema, check_metadata: bool, lvl: int, path: str, errs: list[Cause]) -> None:
    if check_metadata and s.get("type", "") != "object":
        errs.append(_invalid(child(path, "type"), s.get("type", ""), "must be object"))
    if lvl == _ROOT:
        rest = {k: v for k, v in s.items() if k not in ("type", "default")}
        props = rest.get("properties")
        if isinstance(props, Mapping) and set(props) <= {"name", "generateName"} and props:
            rest.pop("properties")
        rest = {k: v for k, v in rest.items() if not _zero(k, v)}
        if rest:
            errs.append(
                _forbidden(
                    path,
                    "must not specify anything other than name and generateName, but metadata is implicitly specified",
                )
            )


def _zero(k: str, v: Any) -> bool:
    """Go zero values of JSONSchemaProps fields (false bools, empty strings, empty slices/maps)."""
    if k == "x-kubernetes-preserve-unknown-fields":
        return v is None
    return v is None or v is False or v == "" or (isinstance(v, (list, dict)) and not v)


def _value_validation(
    s: Schema, skip_any_of: bool, skip_first_all_of_any_of: bool, lvl: int, path: str, errs: list[Cause]
) -> None:
    if not skip_any_of:
        for i, sub in enumerate(s.get("anyOf") or []):
            _nested_value_validation(sub, False, False, lvl, index(child(path, "anyOf"), i), errs)
    for i, sub in enumerate(s.get("allOf") or []):
        _nested_value_validation(
            sub, skip_first_all_of_any_of and i == 0, False, lvl, index(child(path, "allOf"), i), errs
        )
    for i, sub in enumerate(s.get("oneOf") or []):
        _nested_value_validation(sub, False, False, lvl, index(child(path, "oneOf"), i), errs)
    if isinstance(s.get("not"), Mapping):
        _nested_value_validation(s["not"], False, False, lvl, child(path, "not"), errs)
    pattern = s.get("pattern")
    if isinstance(pattern, str) and pattern:
        try:
            _compile_regex(pattern)
        except Exception as ex:  # re and re2 raise different error classes
            errs.append(
                _invalid(
                    child(path, "pattern"),
                    pattern,
                    f"must be a valid regular expression, but isn't: error parsing regexp: {ex}",
                )
            )


def _nested_value_validation(
    v: Any, skip_any_of: bool, skip_all_of_any_of: bool, lvl: int, path: str, errs: list[Cause]
) -> None:
    if not isinstance(v, Mapping):
        return
    _value_validation(v, skip_any_of, skip_all_of_any_of, lvl, path, errs)
    if isinstance(v.get("items"), Mapping):
        _nested_value_validation(v["items"], False, False, lvl, child(path, "items"), errs)
    for k, fld in _props(v).items():
        _nested_value_validation(fld, False, False, _FIELD, key(child(path, "properties"), k), errs)
    checks = [
        ("type", bool(v.get("type")), "must be empty to be structural"),
        (
            "additionalProperties",
            v.get("additionalProperties") is not None,
            "must be undefined to be structural",
        ),
        ("default", v.get("default") is not None, "must be undefined to be structural"),
        ("title", bool(v.get("title")), "must be empty to be structural"),
        ("description", bool(v.get("description")), "must be empty to be structural"),
        ("nullable", bool(v.get("nullable")), "must be false to be structural"),
        ("externalDocs", v.get("externalDocs") is not None, "must be undefined to be structural"),
        (
            "x-kubernetes-preserve-unknown-fields",
            bool(v.get("x-kubernetes-preserve-unknown-fields")),
            "must be false to be structural",
        ),
        (
            "x-kubernetes-embedded-resource",
            bool(v.get("x-kubernetes-embedded-resource")),
            "must be false to be structural",
        ),
        (
            "x-kubernetes-int-or-string",
            bool(v.get("x-kubernetes-int-or-string")),
            "must be false to be structural",
        ),
        (
            "x-kubernetes-list-map-keys",
            bool(v.get("x-kubernetes-list-map-keys")),
            "must be empty to be structural",
        ),
        (
            "x-kubernetes-list-type",
            v.get("x-kubernetes-list-type") is not None,
            "must be undefined to be structural",
        ),
        (
            "x-kubernetes-map-type",
            v.get("x-kubernetes-map-type") is not None,
            "must be undefined to be structural",
        ),
        (
            "x-kubernetes-validations",
            bool(v.get("x-kubernetes-validations")),
            "must be empty to be structural",
        ),
    ]
    for name, bad, detail in checks:
        if bad:
            errs.append(_forbidden(child(path, name), detail))
    if "metadata" in _props(v):
        errs.append(
            _forbidden(
                key(child(path, "properties"), "metadata"), "must not be specified in a nested context"
            )
        )


def _value_validation_completeness(
    v: Schema, s: Schema | None, s_path: str, v_path: str, errs: list[Cause]
) -> None:
    """``validateValueValidationCompleteness`` (upstream checks the root's junctors only)."""
    if s is None:
        errs.append(_required(s_path, f"because it is defined in {v_path}"))
        return
    if isinstance(v.get("not"), Mapping):
        _nested_completeness(v["not"], s, s_path, child(v_path, "not"), errs)
    for junctor in ("allOf", "anyOf", "oneOf"):
        for i, sub in enumerate(v.get(junctor) or []):
            if isinstance(sub, Mapping):
                _nested_completeness(sub, s, s_path, index(child(v_path, junctor), i), errs)


def _nested_completeness(v: Schema, s: Schema | None, s_path: str, v_path: str, errs: list[Cause]) -> None:
    if s is None:
        errs.append(_required(s_path, f"because it is defined in {v_path}"))
        return
    _value_validation_completeness(v, s, s_path, v_path, errs)
    if isinstance(v.get("items"), Mapping):
        _nested_completeness(v["items"], _items(s), child(s_path, "items"), child(v_path, "items"), errs)
    sprops = _props(s)
    for k, vf in _props(v).items():
        if k not in sprops:
            errs.append(
                _required(
                    key(child(s_path, "properties"), k),
                    f"because it is defined in {key(child(v_path, 'properties'), k)}",
                )
            )
        else:
            _nested_completeness(
                vf, sprops[k], key(child(s_path, "properties"), k), key(child(v_path, "properties"), k), errs
            )


# ---------------------------------------------------------------------------------------------
# Defaults (defaulting/validation.go: ValidateDefaults)
# ---------------------------------------------------------------------------------------------


def validate_defaults(path: str, s: Schema, is_resource_root: bool = True) -> list[Cause]:
    """Defaults must validate against their schema (OpenAPI and CEL) and be pruned."""
    errs: list[Cause] = []
    node = dict(s)
    if is_resource_root and not node.get("x-kubernetes-embedded-resource"):
        node["x-kubernetes-embedded-resource"] = True
    _validate_defaults(path, node, False, errs)
    return errs


def _validate_defaults(path: str, s: Schema, inside_meta: bool, errs: list[Cause]) -> None:
    if s.get("x-kubernetes-embedded-resource"):
        inside_meta = False
    default = s.get("default")
    if default is not None and not inside_meta:
        dpath = child(path, "default")
        pruned, _ = prune(default, s, root=bool(s.get("x-kubernetes-embedded-resource")))
        if not _json_equal(pruned, default):
            errs.append(_invalid(dpath, default, "must not have unknown fields"))
        oa = openapi_validate(default, s, dpath)
        errs.extend(oa)
        if not oa and _has_rules(s):
            # with ratcheting on, also as an update from nothing (optionalOldSelf rules see no old value)
            root = bool(s.get("x-kubernetes-embedded-resource"))
            cel_errs = cel.evaluate_validations(default, s, default, dpath, is_resource_root=root)
            errs.extend(cel_errs)
            if not cel_errs:
                errs.extend(cel.evaluate_validations(default, s, None, dpath, is_resource_root=root))
    items = _items(s)
    if items is not None:
        _validate_defaults(child(path, "items"), items, inside_meta, errs)
    ap = _ap_schema(s)
    if ap is not None:
        _validate_defaults(child(path, "additionalProperties"), ap, inside_meta, errs)
    for k, sub in _props(s).items():
        sub_meta = inside_meta or (bool(s.get("x-kubernetes-embedded-resource")) and k in _META_FIELDS)
        _validate_defaults(key(child(path, "properties"), k), sub, sub_meta, errs)


# ---------------------------------------------------------------------------------------------
# ValidateCustomResourceDefinitionOpenAPISchema
# ---------------------------------------------------------------------------------------------

_OPENAPI_V3_TYPES = ["array", "boolean", "integer", "number", "object", "string"]
_SUPPORTED_REASONS = ["FieldValueDuplicate", "FieldValueForbidden", "FieldValueInvalid", "FieldValueRequired"]


@dataclass(frozen=True)
class _SSV:
    """``specStandardValidatorV3`` state."""

    allow_defaults: bool = True
    disallow_reason: str = ""
    inside_resource_meta: bool = False
    forbid_old_self: str | None = None

    def forbidden_defaults(self, reason: str) -> _SSV:
        return _SSV(False, reason, self.inside_resource_meta, self.forbid_old_self)

    def in_meta(self) -> _SSV:
        return _SSV(self.allow_defaults, self.disallow_reason, True, self.forbid_old_self)

    def no_old_self(self, path: str) -> _SSV:
        if self.forbid_old_self is not None:
            return self
        return _SSV(self.allow_defaults, self.disallow_reason, self.inside_resource_meta, path)


@dataclass(frozen=True)
class _CelCtx:
    """Where CEL rules of a node compile (``CELSchemaContext``): is the node a resource root?"""

    is_resource_root: bool


def _ssv_validate(s: Schema, path: str, ssv: _SSV) -> list[Cause]:
    errs: list[Cause] = []
    t = s.get("type")
    if t and t not in _OPENAPI_V3_TYPES:
        errs.append(_not_supported(child(path, "type"), t, _OPENAPI_V3_TYPES))
    if s.get("default") is not None and not ssv.allow_defaults:
        detail = "must not be set" + (f" {ssv.disallow_reason}" if ssv.disallow_reason else "")
        errs.append(_forbidden(child(path, "default"), detail))
    for name, detail in (
        ("id", "id is not supported"),
        ("additionalItems", "additionalItems is not supported"),
        ("patternProperties", "patternProperties is not supported"),
        ("definitions", "definitions is not supported"),
        ("dependencies", "dependencies is not supported"),
        ("$ref", "$ref is not supported"),
    ):
        if s.get(name):
            errs.append(_forbidden(child(path, name), detail))
    if t == "null":
        errs.append(
            _forbidden(child(path, "type"), "type cannot be set to null, use nullable as an alternative")
        )
    if isinstance(s.get("items"), list):
        errs.append(_forbidden(child(path, "items"), "items must be a schema object and not an array"))
    if ssv.inside_resource_meta and s.get("x-kubernetes-embedded-resource"):
        errs.append(
            _forbidden(
                child(path, "x-kubernetes-embedded-resource"), "must not be used inside of resource meta"
            )
        )
    return errs


def _rule_struct(rule: Mapping[str, Any]) -> GoRaw:
    """``%#v`` of an internal ``apiextensions.ValidationRule``."""
    reason = (
        "(*apiextensions.FieldValueErrorReason)(nil)"
        if rule.get("reason") is None
        else ("(*apiextensions.FieldValueErrorReason)(0xc000010000)")
    )
    optional = "(*bool)(nil)" if rule.get("optionalOldSelf") is None else "(*bool)(0xc000010008)"
    return GoRaw(
        "apiextensions.ValidationRule{"
        f"Rule:{go_quote(str(rule.get('rule') or ''))}, Message:{go_quote(str(rule.get('message') or ''))}, "
        f"MessageExpression:{go_quote(str(rule.get('messageExpression') or ''))}, Reason:{reason}, "
        f"FieldPath:{go_quote(str(rule.get('fieldPath') or ''))}, OptionalOldSelf:{optional}}}"
    )


def _newlines(s: str) -> bool:
    return bool(re.search(r"[\n\r]+", s))


def _openapi_schema(
    s: Any, path: str, ssv: _SSV, is_root: bool, cel_ctx: _CelCtx | None
) -> tuple[list[Cause], list[Cause]]:
    """``ValidateCustomResourceDefinitionOpenAPISchema``: (schema errors, CEL errors)."""
    schema_errs: list[Cause] = []
    cel_errs: list[Cause] = []
    if not isinstance(s, Mapping):
        return schema_errs, cel_errs

    def add(result: tuple[list[Cause], list[Cause]]) -> None:
        schema_errs.extend(result[0])
        cel_errs.extend(result[1])

    schema_errs.extend(_ssv_validate(s, path, ssv))
    if s.get("uniqueItems") is True:
        schema_errs.append(
            _forbidden(
                child(path, "uniqueItems"),
                "uniqueItems cannot be set to true since the runtime complexity becomes quadratic",
            )
        )
    props = _props(s)
    ap = s.get("additionalProperties")
    if ap is not None:
        if props and (ap is False or isinstance(ap, Mapping)):
            schema_errs.append(
                _forbidden(
                    child(path, "additionalProperties"),
                    "additionalProperties and properties are mutual exclusive",
                )
            )
        sub_ssv = (
            ssv.forbidden_defaults("inside additionalProperties applying to object metadata")
            if ssv.inside_resource_meta
            else ssv
        )
        ap_ctx = (
            _CelCtx(bool(ap.get("x-kubernetes-embedded-resource")))
            if cel_ctx and isinstance(ap, Mapping)
            else None
        )
        add(_openapi_schema(ap, child(path, "additionalProperties"), sub_ssv, False, ap_ctx))
    for name, prop in props.items():
        sub_ssv = ssv
        if s.get("x-kubernetes-map-type") not in (None, "granular", "atomic"):
            sub_ssv = sub_ssv.no_old_self(path)
        if (is_root or s.get("x-kubernetes-embedded-resource")) and name in _META_FIELDS:
            sub_ssv = sub_ssv.in_meta()
            if is_root:
                sub_ssv = sub_ssv.forbidden_defaults(f"in top-level {name}")
        prop_ctx = (
            _CelCtx(bool(prop.get("x-kubernetes-embedded-resource")))
            if cel_ctx and isinstance(prop, Mapping)
            else None
        )
        add(_openapi_schema(prop, key(child(path, "properties"), name), sub_ssv, False, prop_ctx))
    add(_openapi_schema(s.get("not"), child(path, "not"), ssv, False, None))
    for junctor in ("allOf", "oneOf", "anyOf"):
        for i, sub in enumerate(s.get(junctor) or []):
            add(_openapi_schema(sub, index(child(path, junctor), i), ssv, False, None))
    for name, sub in _m(s.get("definitions")).items():
        add(_openapi_schema(sub, key(child(path, "definitions"), name), ssv, False, None))
    items = s.get("items")
    if items is not None:
        sub_ssv = ssv if s.get("x-kubernetes-list-type") == "map" else ssv.no_old_self(path)
        if isinstance(items, Mapping):
            item_ctx = _CelCtx(bool(items.get("x-kubernetes-embedded-resource"))) if cel_ctx else None
            add(_openapi_schema(items, child(path, "items"), sub_ssv, False, item_ctx))
        elif isinstance(items, list):
            for i, sub in enumerate(items):
                add(_openapi_schema(sub, index(child(path, "items"), i), sub_ssv, False, None))
    for name, dep in _m(s.get("dependencies")).items():
        if isinstance(dep, Mapping):
            add(_openapi_schema(dep, key(child(path, "dependencies"), name), ssv, False, None))
    schema_errs.extend(_extension_checks(s, path))
    schema_errs.extend(_map_list_keys_map_set(s, path))
    rules = s.get("x-kubernetes-validations") or []
    if rules:
        schema_errs.extend(_rule_shape_checks(s, rules, path))
        if not schema_errs and cel_ctx is not None:
            cel_errs.extend(_compile_rules(s, rules, path, ssv, cel_ctx))
    return schema_errs, cel_errs


def _extension_checks(s: Schema, path: str) -> list[Cause]:
    errs: list[Cause] = []
    t = s.get("type", "") or ""
    if s.get("x-kubernetes-preserve-unknown-fields") is False:
        errs.append(
            _invalid(child(path, "x-kubernetes-preserve-unknown-fields"), False, "must be true or undefined")
        )
    map_type = s.get("x-kubernetes-map-type")
    if map_type is not None and t != "object":
        msg = "must be object if x-kubernetes-map-type is specified"
        errs.append(_required(child(path, "type"), msg) if not t else _invalid(child(path, "type"), t, msg))
    if map_type is not None and map_type not in ("atomic", "granular"):
        errs.append(_not_supported(child(path, "x-kubernetes-map-type"), map_type, ["atomic", "granular"]))
    list_type = s.get("x-kubernetes-list-type")
    items = _items(s)
    if list_type is not None and t != "array":
        msg = "must be array if x-kubernetes-list-type is specified"
        errs.append(_required(child(path, "type"), msg) if not t else _invalid(child(path, "type"), t, msg))
    elif list_type == "set" and items is not None:
        it = items.get("type")
        if it == "array" and items.get("x-kubernetes-list-type") not in (None, "atomic"):
            errs.append(
                _invalid(
                    child(child(path, "items"), "x-kubernetes-list-type"),
                    items.get("x-kubernetes-list-type"),
                    "must be atomic as item of a list with x-kubernetes-list-type=set",
                )
            )
        elif it == "object" and items.get("x-kubernetes-map-type") != "atomic":
            errs.append(
                _invalid(
                    child(child(path, "items"), "x-kubernetes-map-type"),
                    items.get("x-kubernetes-list-type"),
                    "must be atomic as item of a list with x-kubernetes-list-type=set",
                )
            )
    if list_type is not None and list_type not in ("atomic", "set", "map"):
        errs.append(
            _not_supported(child(path, "x-kubernetes-list-type"), list_type, ["atomic", "set", "map"])
        )
    map_keys = list(s.get("x-kubernetes-list-map-keys") or [])
    if map_keys:
        if list_type is None:
            errs.append(
                _required(
                    child(path, "x-kubernetes-list-type"),
                    "must be map if x-kubernetes-list-map-keys is non-empty",
                )
            )
        elif list_type != "map":
            errs.append(
                _invalid(
                    child(path, "x-kubernetes-list-type"),
                    list_type,
                    "must be map if x-kubernetes-list-map-keys is non-empty",
                )
            )
    if list_type == "map":
        if not map_keys:
            errs.append(
                _required(
                    child(path, "x-kubernetes-list-map-keys"),
                    "must not be empty if x-kubernetes-list-type is map",
                )
            )
        if s.get("items") is None:
            errs.append(
                _required(child(path, "items"), "must have a schema if x-kubernetes-list-type is map")
            )
        elif items is None:
            errs.append(
                _invalid(
                    child(path, "items"),
                    s.get("items"),
                    "must only have a single schema if x-kubernetes-list-type is map",
                )
            )
        elif items.get("type") != "object":
            errs.append(
                _invalid(
                    child(child(path, "items"), "type"),
                    items.get("type", ""),
                    "must be object if parent array's x-kubernetes-list-type is map",
                )
            )
        else:
            seen: set[str] = set()
            iprops = _props(items)
            for k in map_keys:
                if k in iprops:
                    if iprops[k].get("type") in ("array", "object"):
                        errs.append(
                            _invalid(
                                child(key(child(child(path, "items"), "properties"), k), "type"),
                                items.get("type", ""),
                                "must be a scalar type if parent array's x-kubernetes-list-type is map",
                            )
                        )
                else:
                    errs.append(
                        _invalid(
                            child(path, "x-kubernetes-list-map-keys"),
                            map_keys,
                            "entries must all be names of item properties",
                        )
                    )
                if k in seen:
                    errs.append(
                        _invalid(
                            child(path, "x-kubernetes-list-map-keys"),
                            map_keys,
                            "must not contain duplicate entries",
                        )
                    )
                seen.add(k)
    return errs


def _map_list_keys_map_set(s: Schema, path: str) -> list[Cause]:
    """``validateMapListKeysMapSet``."""
    errs: list[Cause] = []
    items = _items(s)
    list_type = s.get("x-kubernetes-list-type")
    if items is None or list_type not in ("set", "map"):
        return errs
    if items.get("nullable"):
        errs.append(
            _forbidden(
                child(child(path, "items"), "nullable"),
                f"cannot be nullable when x-kubernetes-list-type is {list_type}",
            )
        )
    if list_type == "map":
        required = set(items.get("required") or [])
        iprops = _props(items)
        for k in s.get("x-kubernetes-list-map-keys") or []:
            if k not in iprops:
                continue
            kpath = key(child(child(path, "items"), "properties"), k)
            if k not in required and iprops[k].get("default") is None:
                errs.append(
                    _required(
                        child(kpath, "default"),
                        "this property is in x-kubernetes-list-map-keys, so it must have a default or be a required property",
                    )
                )
            if iprops[k].get("nullable"):
                errs.append(
                    _forbidden(
                        child(kpath, "nullable"),
                        "this property is in x-kubernetes-list-map-keys, so it cannot be nullable",
                    )
                )
    return errs


def _rule_shape_checks(s: Schema, rules: Sequence[Any], path: str) -> list[Cause]:
    errs: list[Cause] = []
    for i, rule in enumerate(rules):
        rpath = index(child(path, "x-kubernetes-validations"), i)
        if not isinstance(rule, Mapping):
            errs.append(_required(child(rpath, "rule"), "rule is not specified"))
            continue
        text = str(rule.get("rule") or "")
        message = str(rule.get("message") or "")
        msg_expr = str(rule.get("messageExpression") or "")
        if not text.strip():
            errs.append(_required(child(rpath, "rule"), "rule is not specified"))
        elif message and not message.strip():
            errs.append(_invalid(child(rpath, "message"), message, "message must be non-empty if specified"))
        elif _newlines(message.strip()):
            errs.append(_invalid(child(rpath, "message"), message, "message must not contain line breaks"))
        elif _newlines(text.strip()) and not message.strip():
            errs.append(
                _required(child(rpath, "message"), "message must be specified if rule contains line breaks")
            )
        if msg_expr and not msg_expr.strip():
            errs.append(
                _required(
                    child(rpath, "messageExpression"), "messageExpression must be non-empty if specified"
                )
            )
        reason = rule.get("reason")
        if reason is not None and reason not in _SUPPORTED_REASONS:
            errs.append(_not_supported(child(rpath, "reason"), reason, _SUPPORTED_REASONS))
        fp = rule.get("fieldPath")
        if fp is not None and fp != "":
            fp = str(fp)
            if not fp.strip():
                errs.append(
                    _invalid(child(rpath, "fieldPath"), fp, "fieldPath must be non-empty if specified")
                )
            if _newlines(fp):
                errs.append(_invalid(child(rpath, "fieldPath"), fp, "fieldPath must not contain line breaks"))
            if _buildable(s):
                try:
                    cel.valid_field_path(fp, s)
                except ValueError:
                    errs.append(_invalid(child(rpath, "fieldPath"), fp, "fieldPath must be a valid path"))
    return errs


def _compile_rules(s: Schema, rules: Sequence[Any], path: str, ssv: _SSV, ctx: _CelCtx) -> list[Cause]:
    errs: list[Cause] = []
    for i, rule in enumerate(rules):
        rpath = index(child(path, "x-kubernetes-validations"), i)
        text = str(rule.get("rule") or "")
        optional = rule.get("optionalOldSelf")
        uses_old = False
        if text.strip():
            try:
                compiled = cel.compile_rule(
                    text, s, is_resource_root=ctx.is_resource_root, optional_old_self=bool(optional)
                )
                uses_old = compiled.uses_old_self
            except CelCompileError as ex:
                errs.append(_invalid(child(rpath, "rule"), _rule_struct(rule), ex.message))
                continue
        msg_expr = str(rule.get("messageExpression") or "")
        if msg_expr.strip():
            try:
                cel.compile_message_expression(msg_expr, s, is_resource_root=ctx.is_resource_root)
            except CelCompileError as ex:
                errs.append(_invalid(child(rpath, "messageExpression"), _rule_struct(rule), ex.message))
        if uses_old:
            if ssv.forbid_old_self is not None:
                errs.append(
                    _invalid(
                        child(rpath, "rule"),
                        text,
                        f"oldSelf cannot be used on the uncorrelatable portion of the schema within {ssv.forbid_old_self}",
                    )
                )
        elif optional is not None:
            errs.append(
                _invalid(
                    child(rpath, "optionalOldSelf"),
                    bool(optional),
                    "may not be set if oldSelf is not used in rule",
                )
            )
    return errs


# ---------------------------------------------------------------------------------------------
# validateCustomResourceDefinitionValidation
# ---------------------------------------------------------------------------------------------

# JSONSchemaProps fields in declaration order, with their JSON names.
_SCHEMA_FIELDS = [
    ("ID", "id"),
    ("Schema", "$schema"),
    ("Ref", "$ref"),
    ("Description", "description"),
    ("Type", "type"),
    ("Format", "format"),
    ("Title", "title"),
    ("Default", "default"),
    ("Maximum", "maximum"),
    ("ExclusiveMaximum", "exclusiveMaximum"),
    ("Minimum", "minimum"),
    ("ExclusiveMinimum", "exclusiveMinimum"),
    ("MaxLength", "maxLength"),
    ("MinLength", "minLength"),
    ("Pattern", "pattern"),
    ("MaxItems", "maxItems"),
    ("MinItems", "minItems"),
    ("UniqueItems", "uniqueItems"),
    ("MultipleOf", "multipleOf"),
    ("Enum", "enum"),
    ("MaxProperties", "maxProperties"),
    ("MinProperties", "minProperties"),
    ("Required", "required"),
    ("Items", "items"),
    ("AllOf", "allOf"),
    ("OneOf", "oneOf"),
    ("AnyOf", "anyOf"),
    ("Not", "not"),
    ("Properties", "properties"),
    ("AdditionalProperties", "additionalProperties"),
    ("PatternProperties", "patternProperties"),
    ("Dependencies", "dependencies"),
    ("AdditionalItems", "additionalItems"),
    ("Definitions", "definitions"),
    ("ExternalDocs", "externalDocs"),
    ("Example", "example"),
    ("Nullable", "nullable"),
    ("XPreserveUnknownFields", "x-kubernetes-preserve-unknown-fields"),
    ("XEmbeddedResource", "x-kubernetes-embedded-resource"),
    ("XIntOrString", "x-kubernetes-int-or-string"),
    ("XListMapKeys", "x-kubernetes-list-map-keys"),
    ("XListType", "x-kubernetes-list-type"),
    ("XMapType", "x-kubernetes-map-type"),
    ("XValidations", "x-kubernetes-validations"),
]
_ALLOWED_AT_ROOT = [
    "Description",
    "Type",
    "Format",
    "Title",
    "Maximum",
    "ExclusiveMaximum",
    "Minimum",
    "ExclusiveMinimum",
    "MaxLength",
    "MinLength",
    "Pattern",
    "MaxItems",
    "MinItems",
    "UniqueItems",
    "MultipleOf",
    "Required",
    "Items",
    "Properties",
    "ExternalDocs",
    "Example",
    "XPreserveUnknownFields",
    "XValidations",
]
_SCHEMA_ZERO_BOOLS = {
    "uniqueItems",
    "exclusiveMaximum",
    "exclusiveMinimum",
    "nullable",
    "x-kubernetes-embedded-resource",
    "x-kubernetes-int-or-string",
}


def _schema_struct(s: Schema) -> GoRaw:
    """An abbreviated ``%#v`` of ``apiextensions.JSONSchemaProps``."""
    shown = ", ".join(
        f"{go}:{cel.go_sharp(s[js])}"
        for go, js in _SCHEMA_FIELDS
        if js in s and js not in ("properties", "items")
    )
    return GoRaw("apiextensions.JSONSchemaProps{" + shown + "}")


def _validate_validation(
    schema: Any, status_enabled: bool, path: str, *, pruned_defaults: bool = True
) -> list[Cause]:
    """``validateCustomResourceDefinitionValidation`` for ``<path>.openAPIV3Schema``."""
    errs: list[Cause] = []
    if not isinstance(schema, Mapping):
        return errs
    spath = child(path, "openAPIV3Schema")
    if status_enabled:
        for go, js in _SCHEMA_FIELDS:
            if js not in schema:
                continue
            v = schema[js]
            if v is None or (js in _SCHEMA_ZERO_BOOLS and v is False) or v == "":
                continue
            if go == "Type":
                if v != "object":
                    errs.append(
                        _invalid(
                            child(path, "openAPIV3Schema.type"),
                            v,
                            'only "object" is allowed as the type at the root of the schema if the status subresource is enabled',
                        )
                    )
                    break
                continue
            if go not in _ALLOWED_AT_ROOT:
                errs.append(
                    _invalid(
                        spath,
                        _schema_struct(schema),
                        f"only [{' '.join(_ALLOWED_AT_ROOT)}] fields are allowed at the root of the schema if the status "
                        "subresource is enabled",
                    )
                )
                break
    if schema.get("nullable"):
        errs.append(
            _forbidden(child(path, "openAPIV3Schema.nullable"), "nullable cannot be true at the root")
        )
    cel_ctx: _CelCtx | None = None
    if _buildable(schema):
        structural = validate_structural(spath, schema)
        if structural:
            errs.extend(structural)
        else:
            defaults = validate_defaults(spath, schema, True) if pruned_defaults else []
            if defaults:
                errs.extend(defaults)
            else:
                cel_ctx = _CelCtx(True)
    schema_errs, cel_errs = _openapi_schema(schema, spath, _SSV(), True, cel_ctx)
    errs.extend(schema_errs)
    errs.extend(cel_errs)
    return errs


# ---------------------------------------------------------------------------------------------
# The CRD object
# ---------------------------------------------------------------------------------------------


def default_crd(crd: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``crd`` with the apiextensions/v1 defaults (``v1/defaults.go``) applied."""
    out: dict[str, Any] = copy.deepcopy(dict(crd))
    spec = out.setdefault("spec", {})
    if not isinstance(spec, dict) or not isinstance(spec.setdefault("names", {}), dict):
        return out
    names = spec["names"]
    if not names.get("singular") and names.get("kind"):
        names["singular"] = str(names["kind"]).lower()
    if not names.get("listKind") and names.get("kind"):
        names["listKind"] = f"{names['kind']}List"
    if spec.get("conversion") is None:
        spec["conversion"] = {"strategy": "None"}
    webhook = _m(spec.get("conversion")).get("webhook") or {}
    service = _m(webhook.get("clientConfig")).get("service")
    if isinstance(service, dict) and service.get("port") is None:
        service["port"] = 443
    return out


@dataclass
class _Internal:
    """The internal-version view of a v1 spec (identical per-version fields hoisted to the top)."""

    validation: Any = None
    subresources: Any = None
    columns: list[Any] = field(default_factory=list)
    selectable: list[Any] = field(default_factory=list)
    versions: list[dict[str, Any]] = field(default_factory=list)


def _to_internal(spec: Mapping[str, Any]) -> _Internal:
    versions = [dict(v) if isinstance(v, Mapping) else {} for v in spec.get("versions") or []]
    internal = _Internal(versions=versions)
    if not versions:
        return internal

    def identical(name: str, empty: Any) -> bool:
        first = versions[0].get(name) or empty
        return all(_json_equal(v.get(name) or empty, first) for v in versions)

    if identical("schema", None):
        internal.validation = versions[0].get("schema")
        for v in versions:
            v.pop("schema", None)
    if identical("subresources", None):
        internal.subresources = versions[0].get("subresources")
        for v in versions:
            v.pop("subresources", None)
    if internal.validation is not None and identical("selectableFields", []):
        internal.selectable = list(versions[0].get("selectableFields") or [])
        for v in versions:
            v.pop("selectableFields", None)
    if identical("additionalPrinterColumns", []):
        internal.columns = list(versions[0].get("additionalPrinterColumns") or [])
        for v in versions:
            v.pop("additionalPrinterColumns", None)
    return internal


def _status_enabled(sub: Any) -> bool:
    return isinstance(sub, Mapping) and sub.get("status") is not None


def _validate_names(names: Mapping[str, Any], path: str) -> list[Cause]:
    """``ValidateCustomResourceDefinitionNames``."""
    errs: list[Cause] = []
    for fld in ("plural", "singular"):
        v = str(names.get(fld) or "")
        if v and (problems := is_dns1035_label(v)):
            errs.append(_invalid(child(path, fld), v, ",".join(problems)))
    for fld in ("kind", "listKind"):
        v = str(names.get(fld) or "")
        if v and (problems := is_dns1035_label(v.lower())):
            errs.append(
                _invalid(
                    child(path, fld),
                    v,
                    "may have mixed case, but should otherwise match: " + ",".join(problems),
                )
            )
    for i, short in enumerate(names.get("shortNames") or []):
        if problems := is_dns1035_label(str(short)):
            errs.append(_invalid(index(child(path, "shortNames"), i), short, ",".join(problems)))
    kind = str(names.get("kind") or "")
    if kind and kind == names.get("listKind"):
        errs.append(
            _invalid(child(path, "listKind"), names.get("listKind"), "kind and listKind may not be the same")
        )
    for i, category in enumerate(names.get("categories") or []):
        if problems := is_dns1035_label(str(category)):
            errs.append(_invalid(index(child(path, "categories"), i), category, ",".join(problems)))
    return errs


_PRINTER_TYPES = ["boolean", "date", "integer", "number", "string"]
_PRINTER_FORMATS = ["byte", "date", "date-time", "double", "float", "int32", "int64", "password"]


def _simple_json_path(s: str, path: str) -> list[Cause]:
    if not s:
        return [_invalid(path, s, "must not be empty")]
    if s[0] != ".":
        return [_invalid(path, s, "must be a simple json path starting with .")]
    return []


def _validate_column(col: Any, path: str) -> list[Cause]:
    """``ValidateCustomResourceColumnDefinition``."""
    errs: list[Cause] = []
    col = col if isinstance(col, Mapping) else {}
    if not col.get("name"):
        errs.append(_required(child(path, "name")))
    t = col.get("type") or ""
    if not t:
        errs.append(_required(child(path, "type"), "must be one of " + ",".join(_PRINTER_TYPES)))
    elif t not in _PRINTER_TYPES:
        errs.append(_invalid(child(path, "type"), t, "must be one of " + ",".join(_PRINTER_TYPES)))
    fmt = col.get("format") or ""
    if fmt and fmt not in _PRINTER_FORMATS:
        errs.append(_invalid(child(path, "format"), fmt, "must be one of " + ",".join(_PRINTER_FORMATS)))
    jp = col.get("jsonPath") or ""
    if not jp:
        errs.append(_required(child(path, "JSONPath")))
    else:
        errs.extend(_simple_json_path(str(jp), child(path, "JSONPath")))
    return errs


def _validate_subresources(sub: Any, path: str) -> list[Cause]:
    """``ValidateCustomResourceDefinitionSubresources``."""
    errs: list[Cause] = []
    if not isinstance(sub, Mapping) or not isinstance(sub.get("scale"), Mapping):
        return errs
    scale = sub["scale"]
    for fld, prefix, where in (
        ("specReplicasPath", (".spec.",), "should be a json path under .spec"),
        ("statusReplicasPath", (".status.",), "should be a json path under .status"),
    ):
        p = child(path, f"scale.{fld}")
        v = str(scale.get(fld) or "")
        if not v:
            errs.append(_required(p))
        elif problems := _simple_json_path(v, p):
            errs.extend(problems)
        elif not v.startswith(prefix):
            errs.append(_invalid(p, v, where))
    selector = scale.get("labelSelectorPath")
    if selector:
        p = child(path, "scale.labelSelectorPath")
        if problems := _simple_json_path(str(selector), p):
            errs.extend(problems)
        elif not str(selector).startswith((".spec.", ".status.")):
            errs.append(_invalid(p, selector, "should be a json path under either .spec or .status"))
    return errs


def _validate_selectable_fields(fields: Sequence[Any], schema: Any, path: str) -> list[Cause]:
    """``ValidateCustomResourceSelectableFields``."""
    errs: list[Cause] = []
    seen: set[str] = set()
    for i, sf in enumerate(fields):
        ipath = child(index(path, i), "jsonPath")
        jp = str(_m(sf).get("jsonPath") or "")
        if not jp:
            errs.append(_required(ipath))
            continue
        if not isinstance(schema, Mapping):
            continue
        if "[" in jp:
            errs.append(_invalid(ipath, jp, "is an invalid path: array notation is not allowed"))
            continue
        try:
            norm, node = cel.valid_field_path(jp, schema)
        except ValueError as ex:
            errs.append(_invalid(ipath, jp, f"is an invalid path: {ex}"))
            continue
        if norm.split(".")[0].split("[")[0] == "metadata":
            errs.append(_invalid(ipath, jp, "must not point to fields in metadata"))
        if node.get("type") not in ("string", "boolean", "integer"):
            errs.append(
                _invalid(
                    ipath,
                    jp,
                    "must point to a field of type string, boolean or integer. Enum string fields and strings with formats are allowed.",
                )
            )
        if norm in seen:
            errs.append(field_err("FieldValueDuplicate", ipath, value=jp))
        seen.add(norm)
    if len(seen) > 8:
        errs.append(field_err("FieldValueTooMany", path, value=len(seen), detail="must have at most 8 items"))
    return errs


def _validate_conversion(conversion: Any, path: str) -> list[Cause]:
    errs: list[Cause] = []
    if not isinstance(conversion, Mapping):
        return errs
    strategy = conversion.get("strategy") or ""
    if not strategy:
        errs.append(_required(child(path, "strategy")))
    elif strategy not in ("None", "Webhook"):
        errs.append(_not_supported(child(path, "strategy"), strategy, ["None", "Webhook"]))
    raw_webhook = conversion.get("webhook")
    webhook: Mapping[str, Any] = raw_webhook if isinstance(raw_webhook, Mapping) else {}
    client_config = webhook.get("clientConfig")
    review_versions = list(webhook.get("conversionReviewVersions") or [])
    if strategy == "Webhook":
        cc_path = child(path, "webhookClientConfig")
        if not isinstance(client_config, Mapping):
            errs.append(_required(cc_path, "required when strategy is set to Webhook"))
        elif (client_config.get("url") is None) == (client_config.get("service") is None):
            errs.append(_required(cc_path, "exactly one of url or service is required"))
        rv_path = child(path, "conversionReviewVersions")
        if not review_versions:
            errs.append(_required(rv_path))
        else:
            seen: set[str] = set()
            for i, v in enumerate(review_versions):
                if v in seen:
                    errs.append(_invalid(index(rv_path, i), v, "duplicate version"))
                    continue
                seen.add(v)
                for problem in is_dns1035_label(str(v)):
                    errs.append(_invalid(index(rv_path, i), v, problem))
            if not seen & {"v1", "v1beta1"}:
                errs.append(_invalid(rv_path, review_versions, "must include at least one of v1, v1beta1"))
    else:
        if client_config is not None:
            errs.append(
                _forbidden(
                    child(path, "webhookClientConfig"),
                    "should not be set when strategy is not set to Webhook",
                )
            )
        if review_versions:
            errs.append(
                _forbidden(
                    child(path, "conversionReviewVersions"),
                    "should not be set when strategy is not set to Webhook",
                )
            )
    return errs


def _api_approval(crd: Mapping[str, Any], old: Mapping[str, Any] | None) -> list[Cause]:
    """``validateAPIApproval`` (``apihelpers.GetAPIApprovalState``) for *.k8s.io / *.kubernetes.io groups."""
    group = str(_m(crd.get("spec")).get("group") or "")
    protected = group in ("k8s.io", "kubernetes.io") or group.endswith((".k8s.io", ".kubernetes.io"))
    if not protected:
        return []
    annotation_key = "api-approved.kubernetes.io"

    def state(obj: Mapping[str, Any]) -> tuple[str, str]:
        value = str(_m(_m(obj.get("metadata")).get("annotations")).get(annotation_key) or "")
        if not value:
            return "missing", (
                f'protected groups must have approval annotation "{annotation_key}", '
                "see https://github.com/kubernetes/enhancements/pull/1111"
            )
        if value.startswith("unapproved"):
            return "bypassed", f"not approved: {go_quote(value)}"
        parts = urlsplit(value)
        if parts.scheme and parts.netloc and not value.startswith(" "):
            return "approved", f"approved in {value}"
        return "invalid", (
            f'protected groups must have approval annotation "{annotation_key}" with either a URL or a reason starting '
            'with "unapproved", see https://github.com/kubernetes/enhancements/pull/1111'
        )

    new_state, reason = state(crd)
    if old is not None and state(old)[0] == new_state:
        return []
    path = f"metadata.annotations[{annotation_key}]"
    if new_state == "missing":
        return [_required(path, reason)]
    if new_state == "invalid":
        value = _m(_m(crd.get("metadata")).get("annotations")).get(annotation_key)
        return [_invalid(path, value, reason)]
    return []


def _established(crd: Mapping[str, Any]) -> bool:
    for cond in _m(crd.get("status")).get("conditions") or []:
        if isinstance(cond, Mapping) and cond.get("type") == "Established":
            return cond.get("status") == "True"
    return False


# The Go types a CRD decodes into (apiextensions/v1 types.go); a value of the wrong JSON type is a
# decoding error (400) before any validation runs. "schema" is JSONSchemaProps, recursively.
_RULE_T: dict[str, Any] = {
    "rule": "string",
    "message": "string",
    "messageExpression": "string",
    "reason": "string",
    "fieldPath": "string",
    "optionalOldSelf": "bool",
}
_SCHEMA_T: dict[str, Any] = {
    "id": "string",
    "$schema": "string",
    "$ref": "string",
    "description": "string",
    "type": "string",
    "format": "string",
    "title": "string",
    "default": "any",
    "maximum": "number",
    "exclusiveMaximum": "bool",
    "minimum": "number",
    "exclusiveMinimum": "bool",
    "maxLength": "int",
    "minLength": "int",
    "pattern": "string",
    "maxItems": "int",
    "minItems": "int",
    "uniqueItems": "bool",
    "multipleOf": "number",
    "enum": ("list", "any"),
    "maxProperties": "int",
    "minProperties": "int",
    "required": ("list", "string"),
    "items": "schema_or_list",
    "allOf": ("list", "schema"),
    "oneOf": ("list", "schema"),
    "anyOf": ("list", "schema"),
    "not": "schema",
    "properties": ("map", "schema"),
    "additionalProperties": "schema_or_bool",
    "patternProperties": ("map", "schema"),
    "dependencies": ("map", "schema_or_strings"),
    "additionalItems": "schema_or_bool",
    "definitions": ("map", "schema"),
    "externalDocs": {"description": "string", "url": "string"},
    "example": "any",
    "nullable": "bool",
    "x-kubernetes-preserve-unknown-fields": "bool",
    "x-kubernetes-embedded-resource": "bool",
    "x-kubernetes-int-or-string": "bool",
    "x-kubernetes-list-map-keys": ("list", "string"),
    "x-kubernetes-list-type": "string",
    "x-kubernetes-map-type": "string",
    "x-kubernetes-validations": ("list", _RULE_T),
}
_NAMES_T: dict[str, Any] = {
    "plural": "string",
    "singular": "string",
    "shortNames": ("list", "string"),
    "kind": "string",
    "listKind": "string",
    "categories": ("list", "string"),
}
_CRD_T: dict[str, Any] = {
    "*": "any",
    "metadata": {"*": "any", "name": "string", "generateName": "string", "annotations": ("map", "string")},
    "spec": {
        "group": "string",
        "names": _NAMES_T,
        "scope": "string",
        "preserveUnknownFields": "bool",
        "versions": (
            "list",
            {
                "name": "string",
                "served": "bool",
                "storage": "bool",
                "deprecated": "bool",
                "deprecationWarning": "string",
                "schema": {"openAPIV3Schema": "schema"},
                "subresources": {
                    "status": ("map", "any"),
                    "scale": {
                        "specReplicasPath": "string",
                        "statusReplicasPath": "string",
                        "labelSelectorPath": "string",
                    },
                },
                "additionalPrinterColumns": (
                    "list",
                    {
                        "name": "string",
                        "type": "string",
                        "format": "string",
                        "description": "string",
                        "priority": "int",
                        "jsonPath": "string",
                    },
                ),
                "selectableFields": ("list", {"jsonPath": "string"}),
            },
        ),
        "conversion": {
            "strategy": "string",
            "webhook": {
                "conversionReviewVersions": ("list", "string"),
                "clientConfig": {
                    "url": "string",
                    "caBundle": "string",
                    "service": {"namespace": "string", "name": "string", "path": "string", "port": "int"},
                },
            },
        },
    },
}
_GO_TYPES = {"string": "string", "bool": "bool", "int": "int64", "number": "float64"}


def _json_kind(v: Any) -> str:
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, (int, float)):
        return "number"
    if isinstance(v, str):
        return "string"
    if isinstance(v, list):
        return "array"
    return "object"


class _DecodeError(Exception):
    pass


def _zero_value(t: Any) -> Any:
    return (
        {"string": "", "bool": False, "int": 0, "number": 0}.get(t, {})
        if isinstance(t, str)
        else ([] if isinstance(t, tuple) and t[0] == "list" else {})
    )


def _decode(v: Any, t: Any, path: str) -> Any:
    """Decode ``v`` into type ``t`` as ``encoding/json`` would: nulls become zero values or absent
    fields, values of the wrong JSON type raise with Go's message."""
    if t == "any":
        return v
    if t == "schema":
        t = _SCHEMA_T
    elif t == "schema_or_bool":
        t = "bool" if isinstance(v, bool) else _SCHEMA_T
    elif t == "schema_or_list":
        t = ("list", "schema") if isinstance(v, list) else _SCHEMA_T
    elif t == "schema_or_strings":
        t = ("list", "string") if isinstance(v, list) else _SCHEMA_T
    if v is None:
        return _zero_value(t)
    if isinstance(t, str):
        ok = {
            "string": isinstance(v, str),
            "bool": isinstance(v, bool),
            "int": (isinstance(v, int) and not isinstance(v, bool))
            or (isinstance(v, float) and v.is_integer()),
            "number": isinstance(v, (int, float)) and not isinstance(v, bool),
        }[t]
        if not ok:
            shown = f"number {cel.go_float(v)}" if t == "int" and isinstance(v, float) else _json_kind(v)
            raise _DecodeError(
                f"json: cannot unmarshal {shown} into Go struct field {path} of type {_GO_TYPES[t]}"
            )
        return int(v) if t == "int" else v
    if isinstance(t, dict):
        if not isinstance(v, Mapping):
            raise _DecodeError(
                f"json: cannot unmarshal {_json_kind(v)} into Go struct field {path} of type struct"
            )
        out: dict[str, Any] = {}
        for k, x in v.items():
            if x is None and k not in ("default", "example"):
                continue  # a null pointer or zero value: as good as absent
            if k == "default" and x is None:
                continue  # a null default is no default (v1 JSON.Raw of "null")
            if k in t:
                out[k] = _decode(x, t[k], f"{path}.{k}")
            elif "*" in t:
                out[k] = x  # not a typed struct here (metadata, the CRD's envelope): kept as is
            # else: an unknown field of a typed struct, dropped by the decoder
        return out
    kind, sub = t
    if kind == "list":
        if not isinstance(v, list):
            elem = sub if isinstance(sub, str) and sub in _GO_TYPES else "object"
            raise _DecodeError(
                f"json: cannot unmarshal {_json_kind(v)} into Go struct field {path} of type []{elem}"
            )
        return [_decode(x, sub, path) for x in v]
    if not isinstance(v, Mapping):
        raise _DecodeError(
            f"json: cannot unmarshal {_json_kind(v)} into Go struct field {path} of type map[string]object"
        )
    return {k: _decode(x, sub, path) for k, x in v.items()}


def decode_crd(crd: Mapping[str, Any]) -> dict[str, Any]:
    """The CRD as the apiserver sees it after decoding (nulls dropped, zero values filled).

    Raises the 400 :class:`StatusError` a real apiserver returns when a field has the wrong JSON type.
    """
    try:
        out = _decode(crd, _CRD_T, "CustomResourceDefinition")
    except _DecodeError as ex:
        raise bad_request(
            f'CustomResourceDefinition in version "v1" cannot be handled as a CustomResourceDefinition: {ex}'
        ) from None
    return dict(out)


def validate_crd(crd: dict[str, Any], old: dict[str, Any] | None) -> list[Cause]:
    """Validate an apiextensions.k8s.io/v1 CustomResourceDefinition (create, or update from ``old``).

    Returns the causes of the 422 (empty when valid), worded and ordered as
    ``ValidateCustomResourceDefinition[Update]`` reports them. Raises :class:`StatusError` (400
    BadRequest) when a field has the wrong JSON type, as decoding does before validation.
    """
    crd = default_crd(decode_crd(crd))
    if old is not None:
        old = decode_crd(old)
    errs: list[Cause] = []
    meta = _m(crd.get("metadata"))
    spec = _m(crd.get("spec"))
    names = _m(spec.get("names"))
    group = str(spec.get("group") or "")
    name = str(meta.get("name") or "")

    if old is None:
        # ValidateObjectMeta with the CRD name rule (create only)
        if not name and not meta.get("generateName"):
            errs.append(_required("metadata.name", "name or generateName is required"))
        elif name:
            for problem in is_dns1123_subdomain(name):
                errs.append(_invalid("metadata.name", name, problem))
            if name != f"{names.get('plural', '')}.{group}":
                errs.append(_invalid("metadata.name", name, 'must be spec.names.plural+"."+spec.group'))
    else:
        # ValidateObjectMetaUpdate: the name is immutable
        old_name = str(_m(old.get("metadata")).get("name") or "")
        if name != old_name:
            errs.append(_invalid("metadata.name", name, "field is immutable"))

    errs.extend(_validate_spec(spec, old))

    if old is not None:
        old_spec = _m(old.get("spec")) if isinstance(old, Mapping) else {}
        if _established(old):
            for fld, value, old_value in (
                ("spec.scope", spec.get("scope"), old_spec.get("scope")),
                ("spec.names.kind", names.get("kind"), _m(old_spec.get("names")).get("kind")),
            ):
                if value != old_value:
                    errs.append(_invalid(fld, value, "field is immutable"))
        for fld, value, old_value in (
            ("spec.group", spec.get("group"), old_spec.get("group")),
            ("spec.names.plural", names.get("plural"), _m(old_spec.get("names")).get("plural")),
        ):
            if value != old_value:
                errs.append(_invalid(fld, value, "field is immutable"))

    # The status is server-owned: PrepareForCreate resets it and records the storage version;
    # PrepareForUpdate keeps the old status and adds the (new) storage version
    # (pkg/registry/customresourcedefinition/strategy.go).
    if old is not None:
        stored = list((_m(old.get("status")).get("storedVersions")) or [])
        for v in spec.get("versions") or []:
            if isinstance(v, Mapping) and v.get("storage") and v.get("name") not in stored:
                stored.append(v.get("name"))
        errs.extend(_validate_stored_versions(stored, spec.get("versions") or []))
    errs.extend(_api_approval(crd, old))
    old_preserve = old is not None and bool(_m(old.get("spec")).get("preserveUnknownFields"))
    if spec.get("preserveUnknownFields") and not old_preserve:
        errs.append(
            _invalid(
                "spec.preserveUnknownFields",
                True,
                "cannot set to true, set x-kubernetes-preserve-unknown-fields to true in spec.versions[*].schema instead",
            )
        )
    return errs


def _validate_stored_versions(stored: list[Any], versions: Sequence[Any]) -> list[Cause]:
    path = "status.storedVersions"
    if not stored:
        return [_invalid(path, stored, "must have at least one stored version")]
    errs: list[Cause] = []
    remaining = {v: i for i, v in enumerate(stored)}
    for v in versions:
        vname = _m(v).get("name")
        if _m(v).get("storage") and vname not in remaining:
            errs.append(_invalid(path, stored, f"must have the storage version {vname}"))
        remaining.pop(vname, None)
    for v, i in remaining.items():
        errs.append(
            _invalid(
                index(path, i),
                v,
                f"missing from spec.versions; {v} was previously a storage version, and must remain in spec.versions until "
                f"a storage migration ensures no data remains persisted in {v} and removes {v} from status.storedVersions",
            )
        )
    return errs


def _has_schema_with(internal: _Internal, pred: Callable[[Any], bool]) -> bool:
    schemas = [internal.validation] + [v.get("schema") for v in internal.versions]
    return any(isinstance(s, Mapping) and pred(s.get("openAPIV3Schema")) for s in schemas)


def _schema_has(s: Any, pred: Callable[[Mapping[str, Any]], bool]) -> bool:
    if not isinstance(s, Mapping):
        return False
    if pred(s):
        return True
    subs: list[Any] = [s.get("items"), s.get("not"), s.get("additionalProperties"), s.get("additionalItems")]
    subs += list(_props(s).values())
    for k in ("allOf", "anyOf", "oneOf"):
        subs += list(s.get(k) or [])
    if isinstance(s.get("items"), list):
        subs += s["items"]
    for k in ("patternProperties", "definitions", "dependencies"):
        if isinstance(s.get(k), Mapping):
            subs += list(s[k].values())
    return any(_schema_has(x, pred) for x in subs)


def _validate_spec(spec: Mapping[str, Any], old: Mapping[str, Any] | None) -> list[Cause]:
    """``validateCustomResourceDefinitionSpec`` on the internal form."""
    errs: list[Cause] = []
    group = str(spec.get("group") or "")
    if not group:
        errs.append(_required("spec.group"))
    elif problems := is_dns1123_subdomain(group):
        errs.append(_invalid("spec.group", group, ",".join(problems)))
    elif len(group.split(".")) < 2:
        errs.append(_invalid("spec.group", group, "should be a domain with at least one dot"))

    scope = str(spec.get("scope") or "")
    if not scope:
        errs.append(_required("spec.scope"))
    elif scope not in ("Cluster", "Namespaced"):
        errs.append(_not_supported("spec.scope", scope, ["Cluster", "Namespaced"]))

    internal = _to_internal(spec)
    preserve = bool(spec.get("preserveUnknownFields"))
    if (
        internal.validation is None
        or not isinstance(internal.validation, Mapping)
        or internal.validation.get("openAPIV3Schema") is None
    ):
        for i, v in enumerate(internal.versions):
            sch = v.get("schema")
            if not isinstance(sch, Mapping) or sch.get("openAPIV3Schema") is None:
                errs.append(_required(f"spec.versions[{i}].schema.openAPIV3Schema", "schemas are required"))
    if (
        _has_schema_with(internal, lambda s: _schema_has(s, lambda n: n.get("default") is not None))
        and preserve
    ):
        errs.append(
            _invalid(
                "spec.preserveUnknownFields", True, "must be false in order to use defaults in the schema"
            )
        )

    storage_count = 0
    seen: set[str] = set()
    unique = True
    for i, version in enumerate(internal.versions):
        vpath = f"spec.versions[{i}]"
        vname = str(version.get("name") or "")
        if version.get("storage"):
            storage_count += 1
        if vname in seen:
            unique = False
        seen.add(vname)
        if problems := is_dns1035_label(vname):
            errs.append(_invalid(child(vpath, "name"), vname, ",".join(problems)))
        subresources = internal.subresources if "subresources" not in version else version.get("subresources")
        errs.extend(_validate_version(version, vpath, _status_enabled(subresources)))

    versions_value = GoRaw(_versions_struct(internal.versions))
    if not unique:
        errs.append(_invalid("spec.versions", versions_value, "must contain unique version names"))
    if storage_count != 1:
        errs.append(
            _invalid(
                "spec.versions", versions_value, "must have exactly one version marked as storage version"
            )
        )

    for fld in ("plural", "singular", "kind", "listKind"):
        if not _m(spec.get("names")).get(fld):
            errs.append(_required(f"spec.names.{fld}"))
    errs.extend(_validate_names(spec.get("names") or {}, "spec.names"))

    any_status = _status_enabled(internal.subresources) or any(
        _status_enabled(v.get("subresources")) for v in internal.versions
    )
    if isinstance(internal.validation, Mapping):
        errs.extend(
            _validate_validation(internal.validation.get("openAPIV3Schema"), any_status, "spec.validation")
        )
    errs.extend(_validate_subresources(internal.subresources, "spec.subresources"))
    for i, col in enumerate(internal.columns):
        errs.extend(_validate_column(col, f"spec.additionalPrinterColumns[{i}]"))
    if internal.selectable:
        if not isinstance(internal.validation, Mapping):
            errs.append(
                _invalid(
                    "spec.selectableFields",
                    "",
                    "selectableFields may only be set when validations.schema is included",
                )
            )
        else:
            errs.extend(
                _validate_selectable_fields(
                    internal.selectable, internal.validation.get("openAPIV3Schema"), "spec.selectableFields"
                )
            )
    conversion = spec.get("conversion")
    if isinstance(conversion, Mapping) and conversion.get("strategy") not in (None, "", "None") and preserve:
        errs.append(
            _invalid(
                "spec.conversion.strategy",
                conversion.get("strategy"),
                "must be None if spec.preserveUnknownFields is true",
            )
        )
    errs.extend(_validate_conversion(conversion, "spec.conversion"))
    return errs


def _versions_struct(versions: Sequence[Mapping[str, Any]]) -> str:
    """An abbreviated ``%#v`` of ``[]apiextensions.CustomResourceDefinitionVersion``."""
    inner = ", ".join(
        "apiextensions.CustomResourceDefinitionVersion{"
        f"Name:{go_quote(str(v.get('name') or ''))}, Served:{'true' if v.get('served') else 'false'}, "
        f"Storage:{'true' if v.get('storage') else 'false'}}}"
        for v in versions
    )
    return "[]apiextensions.CustomResourceDefinitionVersion{" + inner + "}"


def _validate_version(version: Mapping[str, Any], vpath: str, status_enabled: bool) -> list[Cause]:
    """``validateCustomResourceDefinitionVersion``."""
    errs: list[Cause] = []
    warning = version.get("deprecationWarning")
    if warning is not None:
        problems: list[str] = []
        if not version.get("deprecated"):
            problems.append("can only be set for deprecated versions")
        else:
            if len(str(warning)) > 256:
                problems.append("must be <= 256 characters long")
            if not str(warning):
                problems.append("must not be an empty string")
            for n, ch in enumerate(str(warning)):
                if not ch.isprintable():
                    problems.append(
                        f"must only contain printable UTF-8 characters; non-printable character found at index {n}"
                    )
                    break
        for problem in problems:
            errs.append(_invalid(child(vpath, "deprecationWarning"), warning, problem))
    schema = version.get("schema")
    if isinstance(schema, Mapping):
        errs.extend(
            _validate_validation(schema.get("openAPIV3Schema"), status_enabled, child(vpath, "schema"))
        )
    errs.extend(_validate_subresources(version.get("subresources"), child(vpath, "subresources")))
    for i, col in enumerate(version.get("additionalPrinterColumns") or []):
        errs.extend(_validate_column(col, index(child(vpath, "additionalPrinterColumns"), i)))
    selectable = version.get("selectableFields") or []
    if selectable:
        if not isinstance(schema, Mapping) or schema.get("openAPIV3Schema") is None:
            errs.append(
                _invalid(
                    child(vpath, "selectableFields"),
                    "",
                    "selectableFields may only be set when version.schema.openAPIV3Schema is not included",
                )
            )
        else:
            errs.extend(
                _validate_selectable_fields(
                    selectable, schema.get("openAPIV3Schema"), child(vpath, "selectableFields")
                )
            )
    return errs
