"""The three patch types kube-apiserver applies to built-in objects, as pure functions.

Upstream sources this module follows (kubernetes/kubernetes, ``staging/src/k8s.io/...``):

* ``apiserver/pkg/endpoints/handlers/patch.go``: ``PatchResource`` (content-type check, ``;`` params
  stripped), ``jsonPatcher.applyJSPatch`` (decoding, the 10000-operation limit, which HTTP code each
  failure gets), ``strategicPatchObject`` and ``interpretStrategicMergePatchError``.
* ``gopkg.in/evanphx/json-patch.v4`` (vendored): ``patch.go`` (RFC 6902, including its quirks:
  negative array indices, ``replace`` of a missing object key acting as ``add``, a ``copy`` from a
  missing object key copying ``null``) and ``merge.go``: ``MergePatch`` (RFC 7386 with null pruning).
  Behaviour was cross-checked against ``kubectl patch --local`` 1.37, which runs the same code.
* ``apimachinery/pkg/util/strategicpatch/patch.go``: ``StrategicMergeMapPatch`` / ``mergeMap`` and
  friends, with ``meta.go``: ``PatchMetaFromStruct`` and
  ``apimachinery/third_party/forked/golang/json/fields.go``: ``LookupPatchMetadataForStruct``.
  The apiserver looks patch metadata up in the Go structs; kubesim reads the same
  ``x-kubernetes-patch-strategy`` / ``x-kubernetes-patch-merge-key`` from the OpenAPI definitions
  (``k8sdefs``), which are generated from those struct tags.
* ``apimachinery/pkg/util/mergepatch/errors.go`` for the error texts, and
  ``apimachinery/pkg/api/errors/errors.go``: ``NewGenericServerResponse`` for the 422 whose message
  hides the json-patch failure.

Every failure is a :class:`PatchError` (a :class:`kubesim.errors.StatusError`) with the HTTP code,
``reason`` and message the apiserver would answer. Errors the apiserver passes through as plain Go
errors become ``500`` with an empty (``Unknown``) reason and the Go error text as message, as
``responsewriters.ErrorToAPIStatus`` does.

Server-side apply (``application/apply-patch+yaml``) is decoded here (:func:`decode_apply_patch`)
and applied by :mod:`kubesim.fieldmanager`; ``application/apply-patch+cbor`` is not among the
accepted types (415), as on a server without the CBOR feature gates.
"""

from __future__ import annotations

import copy
import decimal
import functools
import json
import math
import re
import string
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Final

from kubesim import k8sdefs
from kubesim.errors import StatusError, field_error, invalid

__all__ = [
    "APPLY_PATCH_CBOR",
    "APPLY_PATCH_YAML",
    "BUILTIN_PATCH_TYPES",
    "CUSTOM_RESOURCE_PATCH_TYPES",
    "JSON_PATCH",
    "MERGE_PATCH",
    "STRATEGIC_MERGE_PATCH",
    "PatchError",
    "decode_apply_patch",
    "decode_patch",
    "json_merge_patch",
    "json_patch",
    "strategic_merge_patch",
]

JSON_PATCH: Final = "application/json-patch+json"
MERGE_PATCH: Final = "application/merge-patch+json"
STRATEGIC_MERGE_PATCH: Final = "application/strategic-merge-patch+json"
APPLY_PATCH_YAML: Final = "application/apply-patch+yaml"
APPLY_PATCH_CBOR: Final = "application/apply-patch+cbor"

#: apiserver/pkg/endpoints/installer.go: APIInstaller.registerResourceHandlers, the PATCH types of built-in kinds.
BUILTIN_PATCH_TYPES: Final = (JSON_PATCH, MERGE_PATCH, STRATEGIC_MERGE_PATCH, APPLY_PATCH_YAML)
#: apiextensions-apiserver/pkg/apiserver/customresource_handler.go: crdHandler.ServeHTTP; custom
#: resources have no Go struct, so strategic merge patch is refused with 415 before decoding.
CUSTOM_RESOURCE_PATCH_TYPES: Final = (JSON_PATCH, MERGE_PATCH, APPLY_PATCH_YAML)

#: apiserver/pkg/endpoints/handlers/patch.go: maxJSONPatchOperations.
MAX_JSON_PATCH_OPERATIONS: Final = 10000
#: apiserver/pkg/server/config.go: NewConfig, JSONPatchMaxCopyBytes (arms jsonpatch.AccumulatedCopySizeLimit).
JSON_PATCH_MAX_COPY_BYTES: Final = 3 * 1024 * 1024

JSONSchema = dict[str, Any]


@dataclass
class PatchError(StatusError):
    """A patch the apiserver refuses; ``code``/``reason``/``message`` are what it answers.

    ``go_error`` keeps the underlying library error where the apiserver's answer hides it (a failed
    json-patch operation answers only "the server rejected our request ..."); it is for logs.
    A ``reason`` of ``""`` is ``StatusReasonUnknown`` (upstream omits it from the Status body).
    """

    go_error: str = ""


# --------------------------------------------------------------------------------------------
# Error constructors
# --------------------------------------------------------------------------------------------


def _bad_request(message: str) -> PatchError:
    # apimachinery/pkg/api/errors/errors.go: NewBadRequest
    return PatchError(400, "BadRequest", message)


def _unprocessable(detail: str) -> PatchError:
    # errors.NewGenericServerResponse(http.StatusUnprocessableEntity, "", schema.GroupResource{}, "",
    # err.Error(), 0, false): the message is the generic one and err.Error() is dropped.
    return PatchError(
        422,
        "Invalid",
        "the server rejected our request due to an error in our request",
        details={},
        go_error=detail,
    )


def _unknown(message: str) -> PatchError:
    # responsewriters/status.go: ErrorToAPIStatus for an error that is not an APIStatus.
    return PatchError(500, "", message, go_error=message)


def _panic(message: str) -> PatchError:
    # Where the Go code would panic (nil type, unhashable map key); the apiserver answers 500.
    return PatchError(
        500, "InternalError", f"Internal error occurred: runtime error: {message}", go_error=message
    )


# --------------------------------------------------------------------------------------------
# Go value semantics: the decoded JSON is map[string]interface{} / []interface{} / string /
# int64 (UnmarshalCaseSensitivePreserveInts) / float64 / bool / nil, compared with Go's ==.
# --------------------------------------------------------------------------------------------

_MAP_T: Final = "map[string]interface {}"
_SLICE_T: Final = "[]interface {}"


def _go_type(v: Any) -> str:
    """``reflect.TypeOf(v).String()`` of a decoded JSON value (``""`` for nil)."""
    if v is None:
        return ""
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, int):
        return "int64"
    if isinstance(v, float):
        return "float64"
    if isinstance(v, str):
        return "string"
    if isinstance(v, dict):
        return _MAP_T
    if isinstance(v, list):
        return _SLICE_T
    raise TypeError(f"not a JSON value: {type(v).__name__}")


def _go_eq(a: Any, b: Any) -> bool:
    """Go's ``==`` on two ``interface{}`` values: different dynamic types are unequal."""
    ta, tb = _go_type(a), _go_type(b)
    if ta != tb:
        return False
    if ta in (_MAP_T, _SLICE_T):
        raise _panic(f"comparing uncomparable type {ta}")
    return bool(a == b)


def _go_key(v: Any) -> tuple[str, Any]:
    """A hashable key with Go map-key identity (``map[interface{}]...``)."""
    t = _go_type(v)
    if t in (_MAP_T, _SLICE_T):
        raise _panic(f"hash of unhashable type {t}")
    return (t, v)


def _go_float(f: float) -> str:
    """``strconv.FormatFloat(f, 'g', -1, 64)``, which ``%v`` uses for float64."""
    if f == 0:
        return "-0" if math.copysign(1.0, f) < 0 else "0"
    sign = "-" if f < 0 else ""
    # shortest round-trip digits (repr), as digits d1d2...dn and the decimal point position dp
    dec = decimal.Decimal(repr(abs(f))).normalize()
    _, digit_tuple, exponent = dec.as_tuple()
    assert isinstance(exponent, int)
    digits = "".join(map(str, digit_tuple))
    dp = len(digits) + exponent
    exp = dp - 1
    if exp < -4 or exp >= 6:  # ftoa.go: %e when the exponent is < -4 or >= 6 (shortest)
        frac = digits[1:]
        return f"{sign}{digits[0]}{'.' + frac if frac else ''}e{'-' if exp < 0 else '+'}{abs(exp):02d}"
    if dp <= 0:
        return f"{sign}0.{'0' * -dp}{digits}"
    if dp >= len(digits):
        return f"{sign}{digits}{'0' * (dp - len(digits))}"
    return f"{sign}{digits[:dp]}.{digits[dp:]}"


def _gofmt(v: Any) -> str:
    """Go's ``%v`` of a decoded JSON value (maps print with sorted keys)."""
    if v is None:
        return "<nil>"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return _go_float(v)
    if isinstance(v, str):
        return v
    if isinstance(v, dict):
        return "map[" + " ".join(f"{k}:{_gofmt(v[k])}" for k in sorted(v)) + "]"
    if isinstance(v, list):
        return "[" + " ".join(_gofmt(x) for x in v) + "]"
    return str(v)


def _gofmt_s(v: Any) -> str:
    """Go's ``%s`` of a decoded JSON value (``%!s(float64=1)`` for non-strings)."""
    if isinstance(v, str):
        return v
    if v is None:
        return "%!s(<nil>)"
    if isinstance(v, dict):
        return "map[" + " ".join(f"{k}:{_gofmt_s(v[k])}" for k in sorted(v)) + "]"
    if isinstance(v, list):
        return "[" + " ".join(_gofmt_s(x) for x in v) + "]"
    return f"%!s({_go_type(v)}={_gofmt(v)})"


def _go_type_name(v: Any) -> str:
    """``%s`` of ``reflect.TypeOf(v)``."""
    t = _go_type(v)
    return t if t else "%!s(<nil>)"


def _go_quote(s: str) -> str:
    """``strconv.Quote`` for the printable strings field names are."""
    return json.dumps(s, ensure_ascii=False)


def _json_kind(v: Any) -> str:
    """The JSON kind ``encoding/json`` names in an ``UnmarshalTypeError``."""
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, (int, float)):
        return "number"
    if isinstance(v, str):
        return "string"
    if isinstance(v, list):
        return "array"
    if isinstance(v, dict):
        return "object"
    return "null"


def _cannot_unmarshal(v: Any, go_type: str) -> str:
    return f"json: cannot unmarshal {_json_kind(v)} into Go value of type {go_type}"


# mergepatch/errors.go
def _err_no_merge_key(m: dict[str, Any], key: str) -> PatchError:
    return _unknown(f"map: {_gofmt(m)} does not contain declared merge key: {key}")


def _err_bad_arg_type(expected: str, actual: Any) -> PatchError:
    return _unknown(f"expected a {expected}, but received a {_go_type_name(actual)}")


def _err_bad_patch_type(directive: Any, m: dict[str, Any]) -> PatchError:
    return _unknown(f"unknown patch type: {_gofmt_s(directive)} in map: {_gofmt(m)}")


_ERR_BAD_PATCH_FORMAT_PRIMITIVE_LIST: Final = "invalid patch format of primitive list"
_ERR_BAD_PATCH_FORMAT_RETAIN_KEYS: Final = "invalid patch format of retainKeys"
_ERR_BAD_PATCH_FORMAT_SET_ELEMENT_ORDER: Final = "invalid patch format of setElementOrder list"
_ERR_NO_LIST_OF_LISTS: Final = "lists of lists are not supported"


# --------------------------------------------------------------------------------------------
# Body decoding (decode_patch)
# --------------------------------------------------------------------------------------------

_INT64_MIN: Final = -(2**63)
_INT64_MAX: Final = 2**63 - 1
_SURROGATE = re.compile("[\ud800-\udfff]")


class _NumberError(ValueError):
    pass


def _parse_int(s: str) -> int | float:
    # sigs.k8s.io/json: UnmarshalCaseSensitivePreserveInts keeps int64, else float64.
    n = int(s)
    if _INT64_MIN <= n <= _INT64_MAX:
        return n
    f = float(s)
    if math.isinf(f):
        raise _NumberError(f"json: cannot unmarshal number {s} into Go value of type float64")
    return f


def _parse_float(s: str) -> float:
    f = float(s)
    if math.isinf(f):
        raise _NumberError(f"json: cannot unmarshal number {s} into Go value of type float64")
    return f


def _parse_constant(s: str) -> Any:
    raise ValueError(s)  # NaN / Infinity are not JSON; turned into a syntax error below


_DECODER: Final = json.JSONDecoder(
    parse_int=_parse_int, parse_float=_parse_float, parse_constant=_parse_constant
)


def _go_quote_char(c: str) -> str:
    """``encoding/json``'s ``quoteChar`` used in syntax error messages."""
    if c == "'":
        return "'\\''"
    if c == '"':
        return "'\"'"
    escapes = {"\a": "\\a", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t", "\v": "\\v"}
    if c in escapes:
        return f"'{escapes[c]}'"
    if ord(c) < 0x20 or ord(c) == 0x7F:
        return f"'\\x{ord(c):02x}'"
    return f"'{c}'"


def _innermost_container(text: str, pos: int) -> str:
    """``{`` or ``[``: the container open at ``pos`` (for "after array element" wording)."""
    stack: list[str] = []
    in_string = escaped = False
    for c in text[:pos]:
        if in_string:
            if escaped:
                escaped = False
            elif c == "\\":
                escaped = True
            elif c == '"':
                in_string = False
        elif c == '"':
            in_string = True
        elif c in "{[":
            stack.append(c)
        elif c in "}]" and stack:
            stack.pop()
    return stack[-1] if stack else ""


def _go_literal_error(text: str, pos: int) -> str | None:
    """encoding/json scanner wording for a bad ``true``/``false``/``null`` or number at ``pos``."""
    c = text[pos]
    for literal in ("true", "false", "null"):
        if c == literal[0]:
            for i, want in enumerate(literal[1:], start=1):
                if pos + i >= len(text):
                    return "unexpected end of JSON input"
                if text[pos + i] != want:
                    got = _go_quote_char(text[pos + i])
                    return f"invalid character {got} in literal {literal} (expecting {_go_quote_char(want)})"
            return None
    if c == "-":
        if pos + 1 >= len(text):
            return "unexpected end of JSON input"
        if not text[pos + 1].isdigit():
            return f"invalid character {_go_quote_char(text[pos + 1])} in numeric literal"
    return None


def _go_number_tail_error(text: str, pos: int) -> str | None:
    """A number cut short after ``.`` or an exponent marker (Python stops before them)."""
    if pos == 0 or not text[pos - 1].isdigit() or text[pos] not in ".eE":
        return None
    nxt = pos + 1
    if text[pos] in "eE" and nxt < len(text) and text[nxt] in "+-":
        nxt += 1
    if nxt >= len(text):
        return "unexpected end of JSON input"
    where = "after decimal point in" if text[pos] == "." else "in exponent of"
    return f"invalid character {_go_quote_char(text[nxt])} {where} numeric literal"


def _go_syntax_error(text: str, exc: json.JSONDecodeError) -> str:
    """An ``encoding/json`` style message for a syntax error Python's parser reported."""
    pos = exc.pos
    msg = exc.msg
    if pos >= len(text) or msg.startswith("Unterminated string"):
        return "unexpected end of JSON input"
    c = text[pos]
    if msg.startswith("Expecting value"):
        return (
            _go_literal_error(text, pos)
            or f"invalid character {_go_quote_char(c)} looking for beginning of value"
        )
    if msg.startswith("Extra data"):
        tail = _go_number_tail_error(text, pos)
        return tail or f"invalid character {_go_quote_char(c)} after top-level value"
    if msg.startswith("Expecting property name"):
        return f"invalid character {_go_quote_char(c)} looking for beginning of object key string"
    if msg.startswith("Expecting ':'"):
        return f"invalid character {_go_quote_char(c)} after object key"
    if msg.startswith("Expecting ','"):
        tail = _go_number_tail_error(text, pos)
        where = "array element" if _innermost_container(text, pos) == "[" else "object key:value pair"
        return tail or f"invalid character {_go_quote_char(c)} after {where}"
    if msg.startswith("Invalid control character"):
        return f"invalid character {_go_quote_char(c)} in string literal"
    if msg.startswith("Invalid \\u"):
        start = text.find("u", pos) + 1
        bad = next((ch for ch in text[start : start + 4] if ch not in string.hexdigits), "")
        if not bad:
            return "unexpected end of JSON input"
        return f"invalid character {_go_quote_char(bad)} in \\u hexadecimal character escape"
    if msg.startswith("Invalid \\escape"):
        esc = text[pos + 1] if pos + 1 < len(text) else c
        return f"invalid character {_go_quote_char(esc)} in string escape code"
    return f"invalid character {_go_quote_char(c)} looking for beginning of value"


def _replace_surrogates(v: Any) -> Any:
    # encoding/json replaces invalid UTF-16 surrogates with U+FFFD.
    if isinstance(v, str):
        return _SURROGATE.sub("\ufffd", v)
    if isinstance(v, list):
        return [_replace_surrogates(x) for x in v]
    if isinstance(v, dict):
        return {_replace_surrogates(k): _replace_surrogates(x) for k, x in v.items()}
    return v


def _parse_json(body: bytes) -> Any:
    """Parse like Go's ``encoding/json``; raises ``ValueError`` with the Go error text."""
    # encoding/json: invalid UTF-8 in strings becomes U+FFFD (outside strings it is a syntax error).
    text = body.decode("utf-8", errors="replace")
    stripped_end = len(text.rstrip(" \t\r\n"))
    try:
        value, end = _DECODER.raw_decode(text, _skip_ws(text, 0))
    except _NumberError as e:
        raise ValueError(str(e)) from None
    except json.JSONDecodeError as e:
        raise ValueError(_go_syntax_error(text, e)) from None
    except ValueError as e:  # NaN / Infinity via parse_constant
        c = _go_quote_char(str(e)[0])
        raise ValueError(f"invalid character {c} looking for beginning of value") from None
    except RecursionError:  # encoding/json allows 10000 levels; Python's parser gives up earlier
        raise ValueError("exceeded max depth") from None
    if end < stripped_end:
        pos = _skip_ws(text, end)
        tail = _go_number_tail_error(text, pos)
        raise ValueError(tail or f"invalid character {_go_quote_char(text[pos])} after top-level value")
    if "\\u" in text or "\\U" in text:
        value = _replace_surrogates(value)
    return value


def _skip_ws(text: str, pos: int) -> int:
    while pos < len(text) and text[pos] in " \t\r\n":
        pos += 1
    return pos


def _check_json_patch_body(ops: Any) -> None:
    """``kjson.UnmarshalStrict(patchBytes, &[]jsonPatchOp)`` fatal errors (the first one)."""
    # apiserver/pkg/endpoints/handlers/patch.go: applyJSPatch. fieldValidation defaults to Warn
    # (handlers/rest.go: fieldValidation), so the strict decode runs first and its message wins.
    if ops is None:
        return  # null decodes to an empty patch
    if not isinstance(ops, list):
        raise _bad_request(f"error decoding patch: {_cannot_unmarshal(ops, '[]handlers.jsonPatchOp')}")
    for op in ops:
        if op is None:
            continue
        if not isinstance(op, dict):
            raise _bad_request(f"error decoding patch: {_cannot_unmarshal(op, 'handlers.jsonPatchOp')}")
        for name, value in op.items():
            if name in ("op", "path", "from") and value is not None and not isinstance(value, str):
                raise _bad_request(
                    f"error decoding patch: json: cannot unmarshal {_json_kind(value)} "
                    f"into Go struct field jsonPatchOp.{name} of type string"
                )


def _check_merge_patch_body(patch: Any) -> None:
    # applyJSPatch, MergePatchType: kjson.UnmarshalStrict(patchBytes, &map[string]interface{}{}).
    if patch is not None and not isinstance(patch, dict):
        raise _bad_request(f"error decoding patch: {_cannot_unmarshal(patch, _MAP_T)}")


def _check_strategic_patch_body(patch: Any) -> None:
    # strategicPatchObject: errors.NewBadRequest(err.Error()) of the unmarshal into a map.
    if patch is not None and not isinstance(patch, dict):
        raise _bad_request(_cannot_unmarshal(patch, _MAP_T))


def _unsupported_media_type(accepted: Iterable[str]) -> PatchError:
    # apiserver/pkg/endpoints/handlers/negotiation/errors.go: NewUnsupportedMediaTypeError
    return PatchError(
        415,
        "UnsupportedMediaType",
        "the body of the request was in an unknown format - accepted media types include: "
        + ", ".join(accepted),
    )


def decode_apply_patch(body: bytes) -> dict[str, Any]:
    """handlers/patch.go: applyPatcher.applyPatchToCurrentObject: ``yaml.Unmarshal`` into a map.

    A ``null`` (or empty) document leaves the map empty; anything but a mapping is a 400.
    """
    import yaml

    try:
        value = yaml.safe_load(body) if body.strip() else None
    except yaml.YAMLError as e:
        raise _bad_request(f"error decoding YAML: {e}") from None
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _bad_request(
            "error decoding YAML: error unmarshaling JSON: while decoding JSON: json: cannot unmarshal "
            f"{'array' if isinstance(value, list) else 'string' if isinstance(value, str) else 'number'} "
            "into Go value of type map[string]interface {}"
        )
    from kubesim import gonum

    return dict(gonum.normalize(value))


def decode_patch(
    content_type: str,
    body: bytes,
    *,
    supported_types: Sequence[str] = BUILTIN_PATCH_TYPES,
) -> Any:
    """Parse a PATCH body and check it fits its ``Content-Type``, as ``PatchResource`` does.

    ``supported_types`` is the resource's list (:data:`CUSTOM_RESOURCE_PATCH_TYPES` for custom
    resources, which refuse strategic merge patch with 415). Returns the decoded JSON (``None`` for
    a ``null`` body, which is an empty json-patch, a no-op strategic merge patch and a 400 for
    merge patch once applied). Bodies are checked as under the default ``fieldValidation=Warn``.
    """
    # handlers/patch.go: PatchResource strips "; charset=..." only when ';' is not the first byte.
    ct = content_type
    idx = ct.find(";")
    if idx > 0:
        ct = ct[:idx]
    if ct not in supported_types:
        raise _unsupported_media_type(supported_types)
    if ct == APPLY_PATCH_YAML:
        return decode_apply_patch(body)
    if ct not in (JSON_PATCH, MERGE_PATCH, STRATEGIC_MERGE_PATCH):
        raise _unsupported_media_type(supported_types)
    try:
        value = _parse_json(body)
    except ValueError as e:
        if ct == STRATEGIC_MERGE_PATCH:
            raise _bad_request(str(e)) from None
        raise _bad_request(f"error decoding patch: {e}") from None
    if ct == JSON_PATCH:
        _check_json_patch_body(value)
    elif ct == MERGE_PATCH:
        _check_merge_patch_body(value)
    else:
        _check_strategic_patch_body(value)
    return value


# --------------------------------------------------------------------------------------------
# JSON merge patch (RFC 7386) — evanphx/json-patch.v4 merge.go: MergePatch
# --------------------------------------------------------------------------------------------


def _prune_nulls(v: Any) -> Any:
    # merge.go: pruneNulls / pruneDocNulls / pruneAryNulls: null members of objects go, at any
    # depth; null array elements stay (json-patch v4.12+, as vendored by Kubernetes 1.37).
    if isinstance(v, dict):
        return {k: _prune_nulls(x) for k, x in v.items() if x is not None}
    if isinstance(v, list):
        return [_prune_nulls(x) for x in v]
    return v


def _merge_value(cur: Any, patch: Any) -> Any:
    # merge.go: merge. A non-object current value is replaced by the pruned patch; an object
    # patched with a non-object takes the patch as is (unpruned).
    if not isinstance(cur, dict):
        return _prune_nulls(patch)
    if not isinstance(patch, dict):
        return patch
    _merge_docs(cur, patch)
    return cur


def _merge_docs(doc: dict[str, Any], patch: dict[str, Any]) -> None:
    # merge.go: mergeDocs
    for k, v in patch.items():
        if v is None:
            doc.pop(k, None)
        elif k not in doc or doc[k] is None:
            doc[k] = _prune_nulls(v)
        else:
            doc[k] = _merge_value(doc[k], v)


def json_merge_patch(original: dict[str, Any], patch: Any) -> dict[str, Any]:
    """Apply an ``application/merge-patch+json`` patch (RFC 7386, evanphx ``MergePatch``)."""
    _require_object(original)
    _check_merge_patch_body(patch)
    if patch is None:
        # merge.go: doMergePatch returns ErrBadJSONPatch for a null patch; applyJSPatch -> 400.
        raise _bad_request("Invalid JSON Patch")
    doc = copy.deepcopy(original)
    _merge_docs(doc, copy.deepcopy(patch))
    return doc


# --------------------------------------------------------------------------------------------
# JSON patch (RFC 6902) — evanphx/json-patch.v4 patch.go: Patch.Apply
# --------------------------------------------------------------------------------------------


class _OpError(Exception):
    """A json-patch operation failure (its text is what evanphx's error says)."""


_MISSING: Final[Any] = object()
_ATOI = re.compile(r"[+-]?[0-9]+")
_POINTER_ESCAPE = re.compile("~[01]")


def _decode_patch_key(k: str) -> str:
    # patch.go: decodePatchKey, strings.NewReplacer("~1", "/", "~0", "~") (one left-to-right pass)
    return _POINTER_ESCAPE.sub(lambda m: "/" if m.group(0) == "~1" else "~", k)


def _atoi(key: str) -> int:
    # strconv.Atoi: optional sign, decimal digits, int64 range.
    if not _ATOI.fullmatch(key):
        raise _OpError(f"strconv.Atoi: parsing {_go_quote(key)}: invalid syntax")
    n = int(key)
    if not _INT64_MIN <= n <= _INT64_MAX:
        raise _OpError(f"strconv.Atoi: parsing {_go_quote(key)}: value out of range")
    return n


def _invalid_index(idx: int) -> _OpError:
    return _OpError(f"Unable to access invalid index: {idx}: invalid index referenced")


def _array_get(ary: list[Any], key: str) -> Any:
    # patch.go: partialArray.get (negative indices count from the end: SupportNegativeIndices)
    idx = _atoi(key)
    if idx < 0:
        if idx < -len(ary):
            raise _invalid_index(idx)
        idx += len(ary)
    if idx >= len(ary):
        raise _invalid_index(idx)
    return ary[idx]


def _container_get(con: dict[str, Any] | list[Any], key: str) -> Any:
    """``container.get``: a missing object key is nil (no error); arrays check the index."""
    if isinstance(con, dict):
        return con.get(key)
    return _array_get(con, key)


def _container_add(con: dict[str, Any] | list[Any], key: str, val: Any) -> None:
    # patch.go: partialDoc.add overwrites; partialArray.add inserts ("-" appends)
    if isinstance(con, dict):
        con[key] = val
        return
    if key == "-":
        con.append(val)
        return
    try:
        idx = _atoi(key)
    except _OpError as e:
        raise _OpError(f"value was not a proper array index: '{key}': {e}") from None
    size = len(con) + 1
    if idx >= size:
        raise _invalid_index(idx)
    if idx < 0:
        if idx < -size:
            raise _invalid_index(idx)
        idx += size
    con.insert(idx, val)


def _container_remove(con: dict[str, Any] | list[Any], key: str) -> None:
    if isinstance(con, dict):
        if key not in con:
            raise _OpError(f"Unable to remove nonexistent key: {key}: missing value")
        del con[key]
        return
    idx = _atoi(key)
    if idx >= len(con):
        raise _invalid_index(idx)
    if idx < 0:
        if idx < -len(con):
            raise _invalid_index(idx)
        idx += len(con)
    del con[idx]


def _container_set(con: dict[str, Any] | list[Any], key: str, val: Any) -> None:
    # patch.go: set is only used by replace, after get succeeded
    if isinstance(con, dict):
        con[key] = val
        return
    idx = _atoi(key)
    if idx < 0:
        if idx < -len(con):
            raise _invalid_index(idx)
        idx += len(con)
    con[idx] = val


def _find_object(doc: Any, path: str) -> tuple[dict[str, Any] | list[Any], str] | None:
    """``findObject``: the container holding the last token of ``path`` and that (decoded) token."""
    split = path.split("/")
    if len(split) < 2:
        return None
    cur: Any = doc
    for part in split[1:-1]:
        try:
            nxt = _container_get(cur, _decode_patch_key(part))
        except _OpError:
            return None
        if not isinstance(nxt, (dict, list)):  # nil, JSON null or a scalar: not traversable
            return None
        cur = nxt
    return cur, _decode_patch_key(split[-1])


def _json_equal(a: Any, b: Any) -> bool:
    """``lazyNode.equal``: structural equality; scalars equal only with the same JSON type."""
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_json_equal(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return (
            isinstance(b, list)
            and len(a) == len(b)
            and all(_json_equal(x, y) for x, y in zip(a, b, strict=True))
        )
    return _go_type(a) == _go_type(b) and a == b


def _op_string(op: dict[str, Any], field: str) -> str | None:
    """``Operation.Path``/``From``: the string, or None when absent or null."""
    v = op.get(field)
    if v is None:
        return None
    if not isinstance(v, str):
        raise _OpError(f"json: cannot unmarshal {_json_kind(v)} into Go value of type string")
    return v


def _op_path(op: dict[str, Any], what: str) -> str:
    try:
        path = _op_string(op, "path")
    except _OpError as e:
        raise _OpError(f"{what} operation failed to decode path: {e}") from None
    if path is None:
        raise _OpError(f"{what} operation failed to decode path: missing value")
    return path


def _op_from(op: dict[str, Any], what: str) -> str:
    try:
        frm = _op_string(op, "from")
    except _OpError as e:
        raise _OpError(f"{what} operation failed to decode from: {e}") from None
    if frm is None:
        raise _OpError(
            f"{what} operation failed to decode from: operation, missing from field: missing value"
        )
    return frm


class _JSONPatcher:
    """One ``Patch.ApplyIndent`` run over a private copy of the document."""

    def __init__(self, doc: Any) -> None:
        self.doc = doc
        self.copied = 0
        self.handlers: dict[str, Callable[[dict[str, Any]], None]] = {
            "add": self._add,
            "remove": self._remove,
            "replace": self._replace,
            "move": self._move,
            "test": self._test,
            "copy": self._copy,
        }

    def apply(self, op: Any) -> None:
        kind = op.get("op") if isinstance(op, dict) else None
        if not isinstance(kind, str):
            kind = "unknown"  # Operation.Kind
        if kind not in self.handlers or not isinstance(op, dict):
            raise _OpError(f"Unexpected kind: {kind}")
        self.handlers[kind](op)

    def _add(self, op: dict[str, Any]) -> None:
        path = _op_path(op, "add")
        found = _find_object(self.doc, path)
        if found is None:
            raise _OpError(f'add operation does not apply: doc is missing path: "{path}": missing value')
        con, key = found
        try:
            _container_add(con, key, copy.deepcopy(op.get("value")))  # no "value": adds null
        except _OpError as e:
            raise _OpError(f"error in add for path: '{path}': {e}") from None

    def _remove(self, op: dict[str, Any]) -> None:
        path = _op_path(op, "remove")
        found = _find_object(self.doc, path)
        if found is None:
            raise _OpError(f'remove operation does not apply: doc is missing path: "{path}": missing value')
        con, key = found
        try:
            _container_remove(con, key)
        except _OpError as e:
            raise _OpError(f"error in remove for path: '{path}': {e}") from None

    def _replace(self, op: dict[str, Any]) -> None:
        path = _op_path(op, "replace")
        if path == "":
            if "value" not in op:
                raise _panic("invalid memory address or nil pointer dereference")
            val = op["value"]
            if not isinstance(val, (dict, list)):
                raise _OpError("replace operation value must be object or array: %!w(<nil>)")
            self.doc = copy.deepcopy(val)
            return
        found = _find_object(self.doc, path)
        if found is None:
            raise _OpError(f"replace operation does not apply: doc is missing path: {path}: missing value")
        con, key = found
        try:
            _container_get(con, key)  # a missing object key is not an error in json-patch v4
        except _OpError:
            raise _OpError(
                f"replace operation does not apply: doc is missing key: {path}: missing value"
            ) from None
        try:
            _container_set(con, key, copy.deepcopy(op.get("value")))
        except _OpError as e:
            raise _OpError(f"error in remove for path: '{path}': {e}") from None

    def _move(self, op: dict[str, Any]) -> None:
        frm = _op_from(op, "move")
        found = _find_object(self.doc, frm)
        if found is None:
            raise _OpError(f"move operation does not apply: doc is missing from path: {frm}: missing value")
        con, key = found
        try:
            val = _container_get(con, key)
            _container_remove(con, key)
        except _OpError as e:
            raise _OpError(f"error in move for path: '{key}': {e}") from None
        path = _op_path(op, "move")
        found = _find_object(self.doc, path)
        if found is None:
            raise _OpError(
                f"move operation does not apply: doc is missing destination path: {path}: missing value"
            )
        con, key = found
        try:
            _container_add(con, key, val)
        except _OpError as e:
            raise _OpError(f"error in move for path: '{path}': {e}") from None

    def _test(self, op: dict[str, Any]) -> None:
        path = _op_path(op, "test")
        expected = op.get("value", _MISSING)
        if path == "":
            if expected is _MISSING:
                raise _panic("invalid memory address or nil pointer dereference")
            if not _json_equal(self.doc, expected):
                raise _OpError(f"testing value {path} failed: test failed")
            return
        found = _find_object(self.doc, path)
        if found is None:
            raise _OpError(f"test operation does not apply: is missing path: {path}: missing value")
        con, key = found
        try:
            val = _container_get(con, key)
        except _OpError as e:
            raise _OpError(f"error in test for path: '{path}': {e}") from None
        if val is None:  # missing or null: matches an absent or null "value"
            if expected is _MISSING or expected is None:
                return
            raise _OpError(f"testing value {path} failed: test failed")
        if expected is _MISSING or not _json_equal(val, expected):
            raise _OpError(f"testing value {path} failed: test failed")

    def _copy(self, op: dict[str, Any]) -> None:
        frm = _op_from(op, "copy")
        found = _find_object(self.doc, frm)
        if found is None:
            raise _OpError(f"copy operation does not apply: doc is missing from path: {frm}: missing value")
        con, key = found
        try:
            val = _container_get(con, key)  # a missing object key copies null
        except _OpError as e:
            raise _OpError(f"error in copy for from: '{frm}': {e}") from None
        path = _op_path(op, "copy")
        found = _find_object(self.doc, path)
        if found is None:
            raise _OpError(
                f"copy operation does not apply: doc is missing destination path: {path}: missing value"
            )
        con, key = found
        if val is not None:  # deepCopy: a nil node (missing or null) copies nothing
            self.copied += len(json.dumps(val, separators=(",", ":"), ensure_ascii=False).encode())
        if self.copied > JSON_PATCH_MAX_COPY_BYTES:
            # errors.go: AccumulatedCopySizeError
            raise _OpError(
                "Unable to complete the copy, the accumulated size increase of copy is "
                f"{self.copied}, exceeding the limit {JSON_PATCH_MAX_COPY_BYTES}"
            )
        try:
            _container_add(con, key, copy.deepcopy(val))
        except _OpError as e:
            raise _OpError(f"error while adding value during copy: {e}") from None


def json_patch(original: dict[str, Any], ops: Any) -> dict[str, Any]:
    """Apply an ``application/json-patch+json`` patch (RFC 6902, evanphx json-patch v4).

    A malformed patch is 400; more than 10000 operations is 413; a failing operation (missing
    path, failed ``test``...) is 422 with the generic message the apiserver gives (the library's
    error text is in :attr:`PatchError.go_error`).
    """
    _require_object(original)
    _check_json_patch_body(ops)
    op_list: list[Any] = ops or []
    if len(op_list) > MAX_JSON_PATCH_OPERATIONS:
        raise PatchError(
            413,
            "RequestEntityTooLarge",
            "Request entity too large: The allowed maximum operations in a JSON patch is "
            f"{MAX_JSON_PATCH_OPERATIONS}, got {len(op_list)}",
        )
    patcher = _JSONPatcher(copy.deepcopy(original))
    for op in op_list:
        try:
            patcher.apply(op)
        except _OpError as e:
            raise _unprocessable(str(e)) from None
    if not isinstance(patcher.doc, dict):
        # jsonPatcher.applyPatchToCurrentObject: the patched JSON does not decode into the object.
        patched = json.dumps(patcher.doc, separators=(",", ":"), ensure_ascii=False)
        decode_error = "couldn't get version/kind; json parse error: " + _cannot_unmarshal(
            patcher.doc,
            'struct { APIVersion string "json:\\"apiVersion,omitempty\\""; '
            'Kind string "json:\\"kind,omitempty\\"" }',
        )
        cause = field_error("FieldValueInvalid", "patch", decode_error, patched, show_value=True)
        err = invalid("", "", "", [cause])
        raise PatchError(err.code, err.reason, err.message, details=err.details, go_error=decode_error)
    doc: dict[str, Any] = patcher.doc
    return doc


def _require_object(original: Any) -> None:
    if not isinstance(original, dict):
        raise TypeError(f"the object to patch must be a dict, not {type(original).__name__}")


# --------------------------------------------------------------------------------------------
# Strategic merge patch — apimachinery/pkg/util/strategicpatch
# --------------------------------------------------------------------------------------------

_DIRECTIVE: Final = "$patch"
_DELETE: Final = "delete"
_REPLACE: Final = "replace"
_MERGE: Final = "merge"
_RETAIN_KEYS_STRATEGY: Final = "retainKeys"
_RETAIN_KEYS: Final = "$retainKeys"
_DELETE_FROM_PRIMITIVE_LIST: Final = "$deleteFromPrimitiveList"
_SET_ELEMENT_ORDER: Final = "$setElementOrder"


@dataclass(frozen=True)
class _PatchMeta:
    """strategicpatch/meta.go: PatchMeta."""

    strategies: tuple[str, ...] = ()
    merge_key: str = ""


@functools.cache
def _definition_names() -> dict[int, str]:
    return {id(schema): name for name, schema in k8sdefs.definitions().items()}


def _resolve_named(schema: JSONSchema) -> tuple[JSONSchema, str]:
    """Follow ``$ref``s; returns the schema and its Go type name (``PodSpec``), if known."""
    name = k8sdefs.ref_name(schema)
    resolved = k8sdefs.resolve(schema)
    if name is None:
        name = _definition_names().get(id(resolved), "")
    else:
        name = k8sdefs.ref_name(resolved) or name
    return resolved, name.rsplit(".", 1)[-1]


def _go_kind(schema: JSONSchema) -> str:
    """``reflect.Kind`` of the Go type a definition was generated from."""
    if "properties" in schema:
        return "struct"
    if isinstance(schema.get("additionalProperties"), dict):
        return "map"
    types = k8sdefs.types_of(schema)
    if "array" in types:
        return "slice"
    if "object" in types:
        return "struct"  # a struct without JSON fields (RawExtension, FieldsV1, empty structs)
    if types == {"string"}:
        return "string"
    if types == {"integer"}:
        return "int32" if schema.get("format") == "int32" else "int64"
    if types == {"number"}:
        return "float64"
    if types == {"boolean"}:
        return "bool"
    return "struct"  # IntOrString, Quantity, apiextensions JSON: Go structs with custom marshalling


class _Lookup:
    """``LookupPatchMeta`` over kubesim's JSON Schemas, with ``PatchMetaFromStruct`` semantics.

    ``schema is None`` means "no schema known": lookups succeed with no strategy (maps merge,
    lists are replaced), as ``PatchMetaFromOpenAPI`` does for a nil schema.
    """

    __slots__ = ("go_name", "schema")

    def __init__(self, schema: JSONSchema | None, go_name: str = "") -> None:
        self.schema = schema
        self.go_name = go_name

    @classmethod
    def root(cls, schema: JSONSchema | None) -> _Lookup:
        if schema is None:
            return cls(None)
        resolved, name = _resolve_named(schema)
        return cls(resolved, name)

    def name(self) -> str:
        # PatchMetaFromStruct.Name: the Kind of the Go type.
        return _go_kind(self.schema) if self.schema is not None else "unknown"

    def lookup_struct(self, key: str) -> tuple[_Lookup, _PatchMeta]:
        """meta.go: PatchMetaFromStruct.LookupPatchMetadataForStruct (fields.go)."""
        if self.schema is None:
            return _Lookup(None), _PatchMeta()
        kind = _go_kind(self.schema)
        if kind != "struct":
            raise _unknown(f"merging an object in json but data type is not struct, instead is: {kind}")
        props: dict[str, JSONSchema] = self.schema.get("properties") or {}
        prop = props.get(key)
        if prop is None:  # fields.go: an exact match wins, else a case-insensitive one
            prop = next((p for name, p in props.items() if name.casefold() == key.casefold()), None)
        if prop is None:
            raise _unknown(
                f"unable to find api field in struct {self.go_name} for the json field {_go_quote(key)}"
            )
        strategy = prop.get("x-kubernetes-patch-strategy")
        strategies = tuple(strategy.split(",")) if isinstance(strategy, str) else ()
        merge_key = prop.get("x-kubernetes-patch-merge-key")
        meta = _PatchMeta(strategies, merge_key if isinstance(merge_key, str) else "")
        sub, sub_name = _resolve_named(prop)
        return _Lookup(sub, sub_name), meta

    def lookup_slice(self, key: str) -> tuple[_Lookup, _PatchMeta]:
        """meta.go: PatchMetaFromStruct.LookupPatchMetadataForSlice: the element type."""
        sub, meta = self.lookup_struct(key)
        if sub.schema is None:
            return sub, meta
        if _go_kind(sub.schema) != "slice":
            raise _unknown(f"expected slice or array type, but got: {self.name()}")
        items = sub.schema.get("items")
        if not isinstance(items, dict):
            return _Lookup(None), meta
        elem, elem_name = _resolve_named(items)
        if _go_kind(elem) == "slice":
            raise _unknown("unexpected slice of slice")
        return _Lookup(elem, elem_name), meta


def _extract_retain_keys_strategy(strategies: tuple[str, ...]) -> tuple[bool, str]:
    """patch.go: extractRetainKeysPatchStrategy."""
    if len(strategies) == 0:
        return False, ""
    if len(strategies) == 1:
        if strategies[0] == _RETAIN_KEYS_STRATEGY:
            return True, ""
        return False, strategies[0]
    if len(strategies) == 2:
        if strategies[0] == _RETAIN_KEYS_STRATEGY:
            return True, strategies[1]
        if strategies[1] == _RETAIN_KEYS_STRATEGY:
            return True, strategies[0]
    raise _unknown(f"unexpected patch strategy: [{' '.join(strategies)}]")


def _extract_key(s: str, prefix: str) -> str:
    """patch.go: extractKey (``$setElementOrder/containers`` -> ``containers``)."""
    head, sep, rest = s.partition("/")
    if not sep or head != prefix:
        if prefix == _DELETE_FROM_PRIMITIVE_LIST:
            raise _bad_request(_ERR_BAD_PATCH_FORMAT_PRIMITIVE_LIST)
        raise _bad_request(_ERR_BAD_PATCH_FORMAT_SET_ELEMENT_ORDER)
    return rest


def _discard_null_values(v: Any) -> None:
    """patch.go: discardNullValuesFromPatch (null map values, recursively; list elements stay)."""
    if isinstance(v, dict):
        for k in [k for k, x in v.items() if x is None]:
            del v[k]
        for x in v.values():
            _discard_null_values(x)
    elif isinstance(v, list):
        for x in v:
            _discard_null_values(x)


def _remove_directives(v: Any) -> tuple[Any, bool]:
    """patch.go: removeDirectives: drop maps carrying ``$patch``; returns (value, keep)."""
    if isinstance(v, dict):
        if _DIRECTIVE in v:
            return None, False
        for k in list(v):
            nv, keep = _remove_directives(v[k])
            if keep:
                v[k] = nv
            else:
                del v[k]
        return v, True
    if isinstance(v, list):
        out = []
        for x in v:
            nx, keep = _remove_directives(x)
            if keep:
                out.append(nx)
        return out, True
    return v, True


def _handle_directive_in_merge_map(directive: Any, patch: dict[str, Any]) -> dict[str, Any]:
    """patch.go: handleDirectiveInMergeMap (only replace and delete are valid on a map)."""
    if isinstance(directive, str) and directive == _REPLACE:
        del patch[_DIRECTIVE]
        return patch
    if isinstance(directive, str) and directive == _DELETE:
        return {}
    raise _err_bad_patch_type(directive, patch)


def _apply_retain_keys(original: dict[str, Any], patch: dict[str, Any]) -> None:
    """patch.go: applyRetainKeysDirective (server side: MergeParallelList)."""
    if _RETAIN_KEYS not in patch:
        return
    retain = patch.pop(_RETAIN_KEYS)
    if not isinstance(retain, list):
        raise _bad_request(_ERR_BAD_PATCH_FORMAT_RETAIN_KEYS)
    keep = {_go_key(v) for v in retain}
    for k, v in patch.items():
        if v is None or k.startswith(_DELETE_FROM_PRIMITIVE_LIST) or k.startswith(_SET_ELEMENT_ORDER):
            continue
        if ("string", k) not in keep:
            raise _bad_request(_ERR_BAD_PATCH_FORMAT_RETAIN_KEYS)
    for k in [k for k in original if ("string", k) not in keep]:
        del original[k]


def _slice_element_kind(*slices: list[Any]) -> str:
    """patch.go: sliceElementType: every element has the same Go type, not a slice."""
    prev: str | None = None
    for s in slices:
        for v in s:
            cur = _go_type(v)
            if prev is None:
                if cur == "":
                    raise _panic("invalid memory address or nil pointer dereference")
                prev = cur
                if prev == _SLICE_T:
                    raise _unprocessable(_ERR_NO_LIST_OF_LISTS)
            elif prev != cur:
                raise _unknown(f"list element types are not identical: {_gofmt(list(slices))}")
    if prev is None:
        raise _unknown("no elements in any of the given slices")
    return "map" if prev == _MAP_T else prev


def _find_map(items: list[Any], key: str, value: Any) -> int | None:
    """patch.go: findMapInSliceBasedOnKeyValue."""
    for i, v in enumerate(items):
        if not isinstance(v, dict):
            raise _unknown(f"value for key {i} is not a map")
        if key in v and _go_eq(v[key], value):
            return i
    return None


def _merge_key_value_equal(left: Any, right: Any, merge_key: str) -> bool:
    """patch.go: mergeKeyValueEqual."""
    if not merge_key:
        return _go_eq(left, right)
    if not isinstance(left, dict):
        raise _err_bad_arg_type(_MAP_T, left)
    if not isinstance(right, dict):
        raise _err_bad_arg_type(_MAP_T, right)
    if merge_key not in left:
        raise _err_no_merge_key(left, merge_key)
    if merge_key not in right:
        raise _err_no_merge_key(right, merge_key)
    return _go_eq(left[merge_key], right[merge_key])


def _extract_to_delete_items(items: list[Any]) -> tuple[list[Any], list[Any]]:
    """patch.go: extractToDeleteItems."""
    keep: list[Any] = []
    delete: list[Any] = []
    for v in items:
        if not isinstance(v, dict):
            raise _err_bad_arg_type(_MAP_T, v)
        d = v.get(_DIRECTIVE, _MISSING)
        if isinstance(d, str) and d == _DELETE:
            delete.append(v)
        else:
            keep.append(v)
    return keep, delete


def _index(items: list[Any], value: Any, merge_key: str, kind: str) -> int:
    """patch.go: index: position of ``value`` in ``items`` (by merge key for maps), or -1."""

    def get(item: Any) -> Any:
        if kind == "map":
            return item.get(merge_key) if isinstance(item, dict) else None
        return item

    target = get(value)
    for i, v in enumerate(items):
        if _go_eq(target, get(v)):
            return i
    return -1


def _go_slice_stable(items: list[Any], less: Callable[[Any, Any], bool]) -> None:
    """``sort.SliceStable`` (Go's ``sort/zsortfunc.go``: ``stable_func``), in place.

    Insertion sort of blocks of 20, then ``symMerge`` of ever larger runs. Replayed step by step
    because ``normalizeSliceOrder``'s comparator is no strict ordering (an item missing from the
    order list is "less" than anything), so the result depends on the algorithm.
    """

    def lt(i: int, j: int) -> bool:
        return less(items[i], items[j])

    def swap(i: int, j: int) -> None:
        items[i], items[j] = items[j], items[i]

    def insertion_sort(a: int, b: int) -> None:
        for i in range(a + 1, b):
            j = i
            while j > a and lt(j, j - 1):
                swap(j, j - 1)
                j -= 1

    def swap_range(a: int, b: int, n: int) -> None:
        for i in range(n):
            swap(a + i, b + i)

    def rotate(a: int, m: int, b: int) -> None:  # block swaps: data[a:m] <-> data[m:b]
        i, j = m - a, b - m
        while i != j:
            if i > j:
                swap_range(m - i, m, j)
                i -= j
            else:
                swap_range(m - i, m + j - i, i)
                j -= i
        swap_range(m - i, m, i)

    def sym_merge(a: int, m: int, b: int) -> None:  # merge sorted data[a:m] and data[m:b]
        if m - a == 1:  # insert data[a] into data[m:b]
            i, j = m, b
            while i < j:
                h = (i + j) // 2
                if lt(h, a):
                    i = h + 1
                else:
                    j = h
            for k in range(a, i - 1):
                swap(k, k + 1)
            return
        if b - m == 1:  # insert data[m] into data[a:m]
            i, j = a, m
            while i < j:
                h = (i + j) // 2
                if not lt(m, h):
                    i = h + 1
                else:
                    j = h
            for k in range(m, i, -1):
                swap(k, k - 1)
            return
        mid = (a + b) // 2
        n = mid + m
        start, r = (n - b, mid) if m > mid else (a, m)
        p = n - 1
        while start < r:
            c = (start + r) // 2
            if not lt(p - c, c):
                start = c + 1
            else:
                r = c
        end = n - start
        if start < m < end:
            rotate(start, m, end)
        if a < start < mid:
            sym_merge(a, start, mid)
        if mid < end < b:
            sym_merge(mid, end, b)

    n = len(items)
    block = 20
    a, b = 0, block
    while b <= n:
        insertion_sort(a, b)
        a, b = b, b + block
    insertion_sort(a, n)
    while block < n:
        a, b = 0, 2 * block
        while b <= n:
            sym_merge(a, a + block, b)
            a, b = b, b + 2 * block
        if a + block < n:
            sym_merge(a, a + block, n)
        block *= 2


def _normalize_slice_order(to_sort: list[Any], order: list[Any], merge_key: str, kind: str) -> list[Any]:
    """patch.go: normalizeSliceOrder: stable sort by position in ``order``; deletions last."""
    to_delete: list[Any] = []
    if kind == "map":
        for lst in (to_sort, order):  # validateMergeKeyInLists
            for item in lst:
                if not isinstance(item, dict):
                    raise _err_bad_arg_type(_MAP_T, item)
                if merge_key not in item:
                    raise _err_no_merge_key(item, merge_key)
        to_sort, to_delete = _extract_to_delete_items(to_sort)
    else:
        to_sort = list(to_sort)

    def less(a: Any, b: Any) -> bool:
        ia = _index(order, a, merge_key, kind)
        if ia >= 0:
            ib = _index(order, b, merge_key, kind)
            if ib >= 0:
                return ia < ib
        return True

    _go_slice_stable(to_sort, less)
    return to_sort + to_delete


def _merge_sorted_slice(
    left: list[Any], right: list[Any], server_order: list[Any], merge_key: str, kind: str
) -> list[Any]:
    """patch.go: mergeSortedSlice: interleave server-only items (left) into patch items (right)."""
    out: list[Any] = []
    i = j = 0
    while i < len(left) and j < len(right):
        li = _index(server_order, left[i], merge_key, kind)
        ri = _index(server_order, right[j], merge_key, kind)
        if li >= 0 and ri >= 0 and li < ri:
            out.append(left[i])
            i += 1
        else:
            out.append(right[j])
            j += 1
    return out + left[i:] + right[j:]


def _normalize_element_order(
    patch: list[Any],
    server_only: list[Any],
    patch_order: list[Any],
    server_order: list[Any],
    merge_key: str,
    kind: str,
) -> list[Any]:
    """patch.go: normalizeElementOrder: $setElementOrder > order in the patch > order on the server."""
    patch = _normalize_slice_order(patch, patch_order, merge_key, kind)
    server_only = _normalize_slice_order(server_only, server_order, merge_key, kind)
    return _merge_sorted_slice(server_only, patch, server_order, merge_key, kind)


def _partition_primitives(items: list[Any], partition_by: list[Any]) -> tuple[list[Any], list[Any]]:
    """patch.go: partitionPrimitivesByPresentInList."""
    present = {_go_key(v) for v in partition_by}
    inside = [v for v in items if _go_key(v) in present]
    outside = [v for v in items if _go_key(v) not in present]
    return inside, outside


def _partition_maps(items: list[Any], partition_by: list[Any], merge_key: str) -> tuple[list[Any], list[Any]]:
    """patch.go: partitionMapsByPresentInList."""
    inside: list[Any] = []
    outside: list[Any] = []
    for v in items:
        if not isinstance(v, dict):
            raise _err_bad_arg_type(_MAP_T, v)
        if merge_key not in v:
            raise _err_no_merge_key(v, merge_key)
        (inside if _find_map(partition_by, merge_key, v[merge_key]) is not None else outside).append(v)
    return inside, outside


class _Aliased:
    """The backing array of a list, as the slice header held by ``mergePatchIntoOriginal`` sees it.

    In Go, ``deleteMatchingEntries`` (``append(s[:i], s[i+1:]...)``) and the ``append`` in
    ``mergeSliceWithoutSpecialElements`` write into the array the caller's ``originalFieldValue``
    still points at, and that mutated view is then the "server order" used to place server-only
    items. Upstream's expected orders depend on it (patch_test.go: "add map and delete map from
    merging list with conflict"), so it is replayed here. Writes past the caller's length are
    invisible to it whatever the capacity, so the capacity does not matter.
    """

    __slots__ = ("arr", "length", "shared")

    def __init__(self, items: list[Any]) -> None:
        self.arr = list(items)
        self.length = len(items)
        self.shared = True  # False once the list being merged no longer uses this array

    def delete(self, index: int) -> None:
        if self.shared:
            self.arr[index : self.length - 1] = self.arr[index + 1 : self.length]
            self.length -= 1

    def append(self, value: Any) -> None:
        if self.shared:
            if self.length < len(self.arr):
                self.arr[self.length] = value
            self.length += 1


def _merge_slice_with_special_elements(
    original: list[Any], patch: list[Any], merge_key: str, alias: _Aliased | None
) -> tuple[list[Any], list[Any]]:
    """patch.go: mergeSliceWithSpecialElements: apply ``$patch: delete|replace`` list elements."""
    plain: list[Any] = []
    replace = False
    for v in patch:
        if _DIRECTIVE not in v:
            plain.append(v)
            continue
        directive = v[_DIRECTIVE]
        if isinstance(directive, str) and directive == _DELETE:
            if merge_key not in v:
                raise _err_no_merge_key(v, merge_key)
            value = v[merge_key]
            while (i := _find_map(original, merge_key, value)) is not None:  # deleteMatchingEntries
                original = original[:i] + original[i + 1 :]
                if alias is not None:
                    alias.delete(i)
        elif isinstance(directive, str) and directive == _REPLACE:
            replace = True
        elif isinstance(directive, str) and directive == _MERGE:
            raise _unknown("merging lists cannot yet be specified in the patch")
        else:
            raise _err_bad_patch_type(directive, v)
    if replace:
        if alias is not None:
            alias.shared = False
        return plain, []
    return original, plain


def _merge_slice_without_special_elements(
    original: list[Any], patch: list[Any], merge_key: str, schema: _Lookup, alias: _Aliased | None
) -> list[Any]:
    """patch.go: mergeSliceWithoutSpecialElements: merge by merge key, append the rest."""
    merged = list(original)
    for v in patch:
        if merge_key not in v:
            raise _err_no_merge_key(v, merge_key)
        i = _find_map(merged, merge_key, v[merge_key])
        if i is None:
            merged.append(v)
            if alias is not None:
                alias.append(v)
        else:
            merged[i] = _merge_map(merged[i], v, schema)  # merges in place: the alias sees it too
    return merged


def _merge_slice(
    original: list[Any],
    patch: list[Any],
    schema: _Lookup,
    merge_key: str,
    is_delete_list: bool,
    alias: _Aliased | None = None,
) -> list[Any]:
    """patch.go: mergeSlice."""
    if not original and not patch:
        return original
    kind = _slice_element_kind(original, patch)
    if kind != "map":
        if is_delete_list:  # deleteFromSlice
            gone = {_go_key(v) for v in patch}
            return [v for v in original if _go_key(v) not in gone]
        merged: list[Any] = []  # deduplicateScalars (the order is fixed by the normalisation below)
        seen: set[tuple[str, Any]] = set()
        for v in original + patch:
            if _go_key(v) not in seen:
                seen.add(_go_key(v))
                merged.append(v)
    else:
        if not merge_key:
            raise _unknown(f"cannot merge lists without merge key for {schema.name()}")
        original, patch = _merge_slice_with_special_elements(original, patch, merge_key, alias)
        merged = _merge_slice_without_special_elements(original, patch, merge_key, schema, alias)
    if not merge_key:
        patch_items, server_only = _partition_primitives(merged, patch)
    else:
        patch_items, server_only = _partition_maps(merged, patch, merge_key)
    return _normalize_element_order(patch_items, server_only, patch, original, merge_key, kind)


def _merge_slice_handler(
    original: Any,
    patch: Any,
    schema: _Lookup,
    strategy: str,
    merge_key: str,
    is_delete_list: bool,
    alias: _Aliased | None = None,
) -> list[Any]:
    """patch.go: mergeSliceHandler: merge strategy (or a deletion list) merges, else replaces."""
    if not isinstance(original, list):
        raise _err_bad_arg_type(_SLICE_T, original)
    if not isinstance(patch, list):
        raise _err_bad_arg_type(_SLICE_T, patch)
    if strategy == _MERGE or is_delete_list:
        return _merge_slice(original, patch, schema, merge_key, is_delete_list, alias)
    return patch


def _merge_map_handler(original: Any, patch: Any, schema: _Lookup, strategy: str) -> dict[str, Any]:
    """patch.go: mergeMapHandler: replace strategy takes the patch, else merge recursively."""
    if not isinstance(original, dict):
        raise _err_bad_arg_type(_MAP_T, original)
    if not isinstance(patch, dict):
        raise _err_bad_arg_type(_MAP_T, patch)
    if strategy != _REPLACE:
        return _merge_map(original, patch, schema)
    return patch


def _validate_patch_with_set_order_list(patch_list: list[Any], set_order: list[Any], merge_key: str) -> None:
    """patch.go: validatePatchWithSetOrderList: the patch items are a subsequence of the order."""
    if not set_order or not patch_list:
        return
    non_delete = _extract_to_delete_items(patch_list)[0] if merge_key else patch_list
    pi = si = 0
    while pi < len(non_delete) and si < len(set_order):
        item = non_delete[pi]
        if isinstance(item, dict) and _DIRECTIVE in item:
            pi += 1
            continue
        if _merge_key_value_equal(item, set_order[si], merge_key):
            pi += 1
        si += 1
    if pi < len(non_delete) and si >= len(set_order):
        raise _unknown(
            f"The order in patch list:\n{_gofmt(patch_list)}\n doesn't match "
            f"{_SET_ELEMENT_ORDER} list:\n{_gofmt(set_order)}\n"
        )


def _merge_patch_into_original(original: dict[str, Any], patch: dict[str, Any], schema: _Lookup) -> None:
    """patch.go: mergePatchIntoOriginal: merge each ``$setElementOrder/<list>`` with its list."""
    for key in [k for k in patch if k.startswith(_SET_ELEMENT_ORDER)]:
        set_order = patch.pop(key)
        if not isinstance(set_order, list):
            raise _err_bad_arg_type(_SLICE_T, set_order)
        field = _extract_key(key, _SET_ELEMENT_ORDER)
        found_original, found_patch = field in original, field in patch
        original_list = original.get(field)
        patch_list = patch.get(field)
        if found_original and not isinstance(original_list, list):
            raise _err_bad_arg_type(_SLICE_T, original_list)
        if found_patch and not isinstance(patch_list, list):
            raise _err_bad_arg_type(_SLICE_T, patch_list)
        original_items: list[Any] = original_list if isinstance(original_list, list) else []
        patch_items_raw: list[Any] = patch_list if isinstance(patch_list, list) else []
        alias = _Aliased(original_items)
        sub, meta = schema.lookup_slice(field)
        _, strategy = _extract_retain_keys_strategy(meta.strategies)
        merge_key = meta.merge_key
        _validate_patch_with_set_order_list(patch_items_raw, set_order, merge_key)
        if found_original and not found_patch:
            merged = original_items
        elif found_patch and not found_original:
            merged = _remove_directives(patch_items_raw)[0]
        elif found_original and found_patch:
            merged = _merge_slice_handler(
                original_items, patch_items_raw, sub, strategy, merge_key, False, alias
            )
        else:
            continue
        if not merge_key:
            in_order, server_only = _partition_primitives(merged, set_order)
        else:
            in_order, server_only = _partition_maps(merged, set_order, merge_key)
        server_order = alias.arr  # originalFieldValue, as the merge above left its backing array
        kind = _slice_element_kind(server_order, patch_items_raw)
        original[field] = _normalize_element_order(
            in_order, server_only, set_order, server_order, merge_key, kind
        )
        patch.pop(field, None)


def _merge_map(original: dict[str, Any], patch: dict[str, Any], schema: _Lookup) -> dict[str, Any]:
    """patch.go: mergeMap with the server-side options (MergeParallelList, IgnoreUnmatchedNulls)."""
    if _DIRECTIVE in patch:
        return _handle_directive_in_merge_map(patch[_DIRECTIVE], patch)
    _apply_retain_keys(original, patch)
    _merge_patch_into_original(original, patch, schema)
    for raw_key, patch_value in list(patch.items()):
        key = raw_key
        is_delete_list = False
        if raw_key.startswith(_DELETE_FROM_PRIMITIVE_LIST):  # preprocessDeletionListForMerging
            key = _extract_key(raw_key, _DELETE_FROM_PRIMITIVE_LIST)
            is_delete_list = True
        if patch_value is None:  # null deletes the key (even for a deletion list's target)
            original.pop(key, None)
            continue
        if key not in original or _go_type(original[key]) != _go_type(patch_value):
            if not is_delete_list:  # a new value (or one of another type) replaces, cleaned up
                _discard_null_values(patch_value)
                value, keep = _remove_directives(patch_value)
                if keep:
                    original[key] = value
                else:
                    original.pop(key, None)
            continue
        current = original[key]
        if isinstance(current, dict):
            sub, meta = schema.lookup_struct(key)
            _, strategy = _extract_retain_keys_strategy(meta.strategies)
            original[key] = _merge_map_handler(current, patch_value, sub, strategy)
        elif isinstance(current, list):
            sub, meta = schema.lookup_slice(key)
            _, strategy = _extract_retain_keys_strategy(meta.strategies)
            original[key] = _merge_slice_handler(
                current, patch_value, sub, strategy, meta.merge_key, is_delete_list
            )
        else:
            original[key] = patch_value
    return original


def strategic_merge_patch(original: dict[str, Any], patch: Any, schema: JSONSchema | None) -> dict[str, Any]:
    """Apply an ``application/strategic-merge-patch+json`` patch (``StrategicMergeMapPatch``).

    ``schema`` is the kind's definition (``k8sdefs.definition(group, version, kind)``); its
    ``x-kubernetes-patch-strategy`` / ``x-kubernetes-patch-merge-key`` drive list merging.
    Where the apiserver's Go-struct lookup fails (a field its struct does not have, or merging
    inside a ``map[string]...`` or a free-form object) the same 500 is raised. With
    ``schema=None`` nothing is known: maps merge, lists are replaced, directives still apply.
    """
    _require_object(original)
    _check_strategic_patch_body(patch)
    if patch is None:
        return copy.deepcopy(original)  # a null body decodes to a nil map: nothing to merge
    return _merge_map(copy.deepcopy(original), copy.deepcopy(patch), _Lookup.root(schema))
