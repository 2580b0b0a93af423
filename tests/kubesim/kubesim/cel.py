"""CEL ``x-kubernetes-validations`` for CustomResourceDefinitions, as apiextensions-apiserver runs them.

Upstream (kubernetes/kubernetes, ``staging/src/k8s.io/apiextensions-apiserver``):

- ``pkg/apiserver/schema/cel/compilation.go: Compile, compileRule`` - a rule compiles against the
  CEL type declared by its schema node (``self`` and ``oldSelf``), must evaluate to a bool, and is a
  *transition rule* when it references ``oldSelf``; ``messageExpression`` must evaluate to a string.
- ``pkg/apiserver/schema/cel/model/schemas.go: SchemaDeclType, WithTypeAndObjectMeta`` - the CEL type
  of a structural schema node: objects expose their declared properties (escaped), maps
  (``additionalProperties``) are CEL maps, ``x-kubernetes-int-or-string`` is ``dyn``, ``format:
  byte|duration|date|date-time`` strings are bytes/duration/timestamp, resource roots always expose
  ``apiVersion``, ``kind``, ``metadata.name`` and ``metadata.generateName``.
- ``staging/src/k8s.io/apiserver/pkg/cel/escaping.go: Escape`` - property-name escaping.
- ``pkg/apiserver/schema/cel/validation.go: Validator.validate, validateExpressions, validateMap,
  validateArray, fieldErrorForReason, evalMessageExpression, ruleMessageOrDefault`` - the walk over
  the object, the old/new correlation (object properties, map keys, ``x-kubernetes-list-type: map``
  keys), transition rules skipped without an old value, and the wording of every error.
- ``pkg/apiserver/schema/cel/values.go`` - set/map-list equality.

cel-python (``celpy``) parses and evaluates; it has no type checker, so :func:`compile_rule` adds a
small static checker (`_Checker`) for what cel-go's checker rejects most often: syntax errors,
undeclared identifiers/functions, undefined fields on declared objects, non-bool rules and
non-string message expressions. Where it cannot tell, it lets the rule through (runtime errors are
still reported as upstream words them).

Simplified or absent (see tests/kubesim/README.md): no cost estimation/budgets, no ratcheting of
unchanged values, the Kubernetes CEL libraries are partial (strings ext, lists, regex ``find``;
no quantity/url/ip/cidr/authz/sets/format), optional types only for ``optionalOldSelf``
(``hasValue``/``value``/``orValue``), syntax-error texts name the offending token but not ANTLR's
"expecting {...}" list.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import functools
import json
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import celpy
import celpy.celtypes as ct
import lark
from celpy.adapter import json_to_cel
from celpy.celparser import CELParseError
from celpy.evaluation import CELEvalError, base_functions

from kubesim.errors import FIELD_ERROR_STRINGS, Cause

try:  # RE2 is what Go's regexp implements; fall back to Python's re if the wheel is missing.
    import re2 as _re2  # type: ignore[import-untyped,unused-ignore]
except ImportError:  # pragma: no cover
    _re2 = None

Tree = lark.Tree[Any]

__all__ = [
    "OMIT",
    "CelCompileError",
    "CompiledRule",
    "DeclType",
    "GoRaw",
    "child",
    "compile_message_expression",
    "compile_regex",
    "compile_rule",
    "escape",
    "evaluate_validations",
    "field_err",
    "go_float",
    "go_quote",
    "go_sharp",
    "go_value",
    "index",
    "key",
    "schema_decl_type",
    "to_cel",
    "uses_old_self",
    "valid_field_path",
]

# ---------------------------------------------------------------------------------------------
# field.Error rendering (k8s.io/apimachinery/pkg/util/validation/field/errors.go: Error.ErrorBody)
# ---------------------------------------------------------------------------------------------


class _Omit:
    """``omitValue``: the error body does not show a value."""


OMIT = _Omit()


@dataclass(frozen=True)
class GoRaw:
    """A value already rendered the way Go's ``%#v`` renders it (e.g. an internal struct)."""

    text: str


def go_quote(s: str) -> str:
    """``strconv.Quote`` / ``%q`` (close enough: JSON escaping without ASCII-only output)."""
    return json.dumps(s, ensure_ascii=False)


def go_float(f: float) -> str:
    """``%v`` of a float64: shortest representation, exponent only below 1e-4 or from 1e21."""
    if math.isnan(f):
        return "NaN"
    if math.isinf(f):
        return "+Inf" if f > 0 else "-Inf"
    if f == 0:
        return "0"
    exp = math.floor(math.log10(abs(f)))
    if -4 <= exp < 21:
        if f.is_integer():
            return str(int(f))
        text = repr(f)
        if "e" in text:
            text = format(f, "f").rstrip("0").rstrip(".")
        return text
    mant, _, e = repr(f).partition("e")
    if not e:
        mant, _, e = format(f, "e").partition("e")
        mant = mant.rstrip("0").rstrip(".")
    sign = "-" if e.startswith("-") else "+"
    digits = e.lstrip("+-").lstrip("0").rjust(2, "0")
    return f"{mant}e{sign}{digits}"


def go_sharp(value: Any) -> str:
    """``%#v`` of an unstructured JSON value (``map[string]interface {}{...}``, ``[]interface {}{...}``)."""
    if isinstance(value, GoRaw):
        return value.text
    if value is None:
        return "interface {}(nil)"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return go_float(value)
    if isinstance(value, str):
        return go_quote(value)
    if isinstance(value, Mapping):
        inner = ", ".join(f"{go_quote(str(k))}:{go_sharp(value[k])}" for k in sorted(value, key=str))
        return "map[string]interface {}{" + inner + "}"
    if isinstance(value, (list, tuple)):
        return "[]interface {}{" + ", ".join(go_sharp(v) for v in value) + "}"
    return go_quote(str(value))


def go_value(value: Any) -> str:
    """The value part of ``ErrorBody``: ``%v`` for simple types, ``%q`` for strings, else ``%#v``."""
    if value is None:
        return '"null"'
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return go_float(value)
    if isinstance(value, str):
        return go_quote(value)
    return go_sharp(value)


def render_path(path: str) -> str:
    """A nil ``*field.Path`` renders as ``<nil>``."""
    return path if path else "<nil>"


def field_err(type_: str, path: str, *, value: Any = OMIT, detail: str = "") -> Cause:
    """A :class:`Cause` worded as ``field.Error.Error()`` words it (``path: Type: value: detail``)."""
    body = FIELD_ERROR_STRINGS.get(type_, type_)
    no_value = {"FieldValueRequired", "FieldValueForbidden", "FieldValueTooLong", "InternalError"}
    if type_ not in no_value and not isinstance(value, _Omit):
        body = f"{body}: {go_value(value)}"
    if detail:
        body = f"{body}: {detail}"
    p = render_path(path)
    return Cause(type=type_, message=f"{p}: {body}", field=p)


def child(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def index(path: str, i: int) -> str:
    return f"{path}[{i}]"


def key(path: str, k: str) -> str:
    return f"{path}[{k}]"


# ---------------------------------------------------------------------------------------------
# Escaping (staging/src/k8s.io/apiserver/pkg/cel/escaping.go: Escape)
# ---------------------------------------------------------------------------------------------

RESERVED = frozenset(
    [
        "true",
        "false",
        "null",
        "in",
        "as",
        "break",
        "const",
        "continue",
        "else",
        "for",
        "function",
        "if",
        "import",
        "let",
        "loop",
        "package",
        "namespace",
        "return",
        "var",
        "void",
        "while",
    ]
)
_EXPAND = re.compile(r"(__|[-./]|[^a-zA-Z0-9\-./_])")
_ESCAPES = {"__": "__underscores__", ".": "__dot__", "-": "__dash__", "/": "__slash__"}


def escape(name: str) -> str | None:
    """The CEL field name of property ``name``, or None when it is not accessible from CEL."""
    if not name or name[0].isdigit():
        return None
    if name in RESERVED:
        return f"__{name}__"
    ok = True

    def repl(m: re.Match[str]) -> str:
        nonlocal ok
        s = m.group(0)
        if s in _ESCAPES:
            return _ESCAPES[s]
        ok = False
        return ""

    out = _EXPAND.sub(repl, name)
    return out if ok else None


# ---------------------------------------------------------------------------------------------
# CEL types of schema nodes (model/schemas.go: SchemaDeclType)
# ---------------------------------------------------------------------------------------------


@dataclass
class DeclType:
    """The CEL type of a value: a primitive kind, ``list``/``map`` with ``elem``, ``object`` with fields."""

    kind: str
    fields: dict[str, DeclType] = field(default_factory=dict)
    elem: DeclType | None = None

    def __str__(self) -> str:
        if self.kind == "list":
            return f"list({self.elem or DYN})"
        if self.kind == "map":
            return f"map(string, {self.elem or DYN})"
        if self.kind == "optional":
            return f"optional_type({self.elem or DYN})"
        return self.kind


DYN = DeclType("dyn")
_STRING = DeclType("string")


def with_type_and_object_meta(schema: Mapping[str, Any]) -> dict[str, Any]:
    """``model.WithTypeAndObjectMeta``: resource roots expose apiVersion, kind, metadata.name/generateName."""
    props = dict(schema.get("properties") or {})
    meta = props.get("metadata") or {}
    mprops = meta.get("properties") or {}
    if (
        (props.get("kind") or {}).get("type") == "string"
        and (props.get("apiVersion") or {}).get("type") == "string"
        and meta.get("type") == "object"
        and (mprops.get("name") or {}).get("type") == "string"
        and (mprops.get("generateName") or {}).get("type") == "string"
    ):
        return dict(schema)
    out = dict(schema)
    props["kind"] = {"type": "string"}
    props["apiVersion"] = {"type": "string"}
    props["metadata"] = {
        "type": "object",
        "properties": {"name": {"type": "string"}, "generateName": {"type": "string"}},
    }
    out["properties"] = props
    return out


def _embedded(schema: Mapping[str, Any] | None) -> bool:
    return bool(schema and schema.get("x-kubernetes-embedded-resource"))


def schema_decl_type(schema: Mapping[str, Any] | None, is_resource_root: bool = False) -> DeclType | None:
    """``SchemaDeclType``: the CEL type of a schema node, or None when CEL cannot see it."""
    if schema is None:
        return None
    if schema.get("x-kubernetes-int-or-string"):
        return DYN
    if is_resource_root:
        schema = with_type_and_object_meta(schema)
    t = schema.get("type", "")
    if t == "array":
        items = schema.get("items")
        if not isinstance(items, Mapping):
            return None
        it = schema_decl_type(items, _embedded(items))
        return None if it is None else DeclType("list", elem=it)
    if t == "object":
        ap = schema.get("additionalProperties")
        if isinstance(ap, Mapping):
            vt = schema_decl_type(ap, _embedded(ap))
            return None if vt is None else DeclType("map", elem=vt)
        fields: dict[str, DeclType] = {}
        for name, prop in (schema.get("properties") or {}).items():
            ft = schema_decl_type(prop, _embedded(prop))
            esc = escape(name)
            if ft is not None and esc is not None:
                fields[esc] = ft
        return DeclType("object", fields=fields)
    if t == "string":
        fmt = schema.get("format")
        if fmt == "byte":
            return DeclType("bytes")
        if fmt == "duration":
            return DeclType("duration")
        if fmt in ("date", "date-time"):
            return DeclType("timestamp")
        return DeclType("string")
    if t == "boolean":
        return DeclType("bool")
    if t == "number":
        return DeclType("double")
    if t == "integer":
        return DeclType("int")
    return None


# ---------------------------------------------------------------------------------------------
# Compilation
# ---------------------------------------------------------------------------------------------


class CelCompileError(Exception):
    """A rule or message expression that apiextensions would reject; ``message`` is the upstream detail."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


_ENV = celpy.Environment()


@functools.lru_cache(maxsize=4096)
def _parse(text: str) -> Tree:
    return _ENV.compile(text)


def _offset_to_line_col(text: str, offset: int) -> tuple[int, int]:
    line = text.count("\n", 0, offset) + 1
    col = offset - (text.rfind("\n", 0, offset) + 1) + 1
    return line, col


def _issue(text: str, offset: int, message: str) -> str:
    """One cel-go issue: ``ERROR: <input>:L:C: msg`` plus the source line and a caret."""
    line, col = _offset_to_line_col(text, offset)
    src = text.splitlines()[line - 1] if text.splitlines() else ""
    return f"ERROR: <input>:{line}:{col}: {message}\n | {src}\n | {'.' * (col - 1)}^"


def _syntax_error(text: str, ex: CELParseError) -> str:
    cause = ex.__context__
    offset = len(text)
    desc = "Syntax error: mismatched input"
    if isinstance(cause, lark.exceptions.UnexpectedToken):
        tok = cause.token
        if tok.type == "$END":
            desc = "Syntax error: mismatched input '<EOF>'"
        else:
            offset = tok.start_pos if tok.start_pos is not None else offset
            desc = f"Syntax error: mismatched input '{tok.value}'"
        if cause.expected == {"$END"}:
            desc += " expecting <EOF>"
    elif isinstance(cause, lark.exceptions.UnexpectedCharacters):
        offset = int(cause.pos_in_stream or 0)
        desc = f"Syntax error: token recognition error at: '{text[offset : offset + 1]}'"
    elif ex.line and ex.column:
        lines = text.splitlines(keepends=True)
        offset = sum(len(x) for x in lines[: ex.line - 1]) + ex.column - 1
    return _issue(text, min(offset, len(text)), desc)


# Functions (global and member) the checker accepts, with their result type when it is fixed.
_FUNC_RESULTS: dict[str, str] = {
    "size": "int",
    "contains": "bool",
    "startsWith": "bool",
    "endsWith": "bool",
    "matches": "bool",
    "int": "int",
    "uint": "uint",
    "double": "double",
    "string": "string",
    "bytes": "bytes",
    "bool": "bool",
    "duration": "duration",
    "timestamp": "timestamp",
    "type": "type",
    "dyn": "dyn",
    "getDate": "int",
    "getDayOfMonth": "int",
    "getDayOfWeek": "int",
    "getDayOfYear": "int",
    "getFullYear": "int",
    "getMonth": "int",
    "getHours": "int",
    "getMilliseconds": "int",
    "getMinutes": "int",
    "getSeconds": "int",
    # k8s strings library (cel-go ext strings)
    "charAt": "string",
    "indexOf": "int",
    "lastIndexOf": "int",
    "lowerAscii": "string",
    "upperAscii": "string",
    "replace": "string",
    "split": "list",
    "substring": "string",
    "trim": "string",
    "join": "string",
    # k8s lists library
    "isSorted": "bool",
    "sum": "dyn",
    "min": "dyn",
    "max": "dyn",
    # k8s regex library
    "find": "string",
    "findAll": "list",
    # optional types (optionalOldSelf)
    "hasValue": "bool",
    "value": "dyn",
    "orValue": "dyn",
}
_STRING_RECEIVER = {
    "startsWith",
    "endsWith",
    "contains",
    "matches",
    "charAt",
    "lowerAscii",
    "upperAscii",
    "replace",
    "split",
    "substring",
    "trim",
    "find",
    "findAll",
}
_LIST_RECEIVER = {"join", "isSorted", "sum", "min", "max"}
_MACROS = {"all", "exists", "exists_one", "map", "filter"}
_TYPE_IDENTS = {"int", "uint", "double", "string", "bytes", "bool", "list", "map", "null_type", "type"}
_KNOWN_KINDS = {
    "int",
    "uint",
    "double",
    "string",
    "bool",
    "bytes",
    "list",
    "map",
    "object",
    "timestamp",
    "duration",
}
_LIT_KINDS = {
    "INT_LIT": "int",
    "UINT_LIT": "uint",
    "FLOAT_LIT": "double",
    "STRING_LIT": "string",
    "MLSTRING_LIT": "string",
    "BYTES_LIT": "bytes",
    "BOOL_LIT": "bool",
    "NULL_LIT": "null",
}


class _CheckError(Exception):
    def __init__(self, offset: int, message: str) -> None:
        super().__init__(message)
        self.offset = offset
        self.message = message


class _Checker:
    """A partial cel-go type checker over celpy's lark tree (see module docstring)."""

    def __init__(self, text: str, variables: dict[str, DeclType]) -> None:
        self.text = text
        self.scopes: list[dict[str, DeclType]] = [variables]
        self.uses_old_self = False

    # -- helpers --------------------------------------------------------------------------------
    def _lookup(self, name: str) -> DeclType | None:
        for scope in reversed(self.scopes):
            if name in scope:
                return scope[name]
        return None

    def _after(self, tok: lark.Token, char: str) -> int:
        pos = tok.end_pos if tok.end_pos is not None else 0
        found = self.text.find(char, pos)
        return found if found >= 0 else pos

    def _before(self, tok: lark.Token, char: str) -> int:
        pos = tok.start_pos if tok.start_pos is not None else 0
        found = self.text.rfind(char, 0, pos)
        return found if found >= 0 else pos

    @staticmethod
    def _start(tok: lark.Token) -> int:
        return tok.start_pos if tok.start_pos is not None else 0

    def _args(self, tree: Tree | None) -> list[Tree]:
        if tree is None:
            return []
        return [c for c in tree.children if isinstance(c, lark.Tree)]

    # -- walk -----------------------------------------------------------------------------------
    def check(self, tree: Tree) -> DeclType:
        method = getattr(self, "_" + str(tree.data), None)
        if method is None:  # pragma: no cover - grammar rules are all handled
            return DYN
        return cast(DeclType, method(tree))

    def _expr(self, t: Tree) -> DeclType:
        kids = self._args(t)
        if len(kids) == 1:
            return self.check(kids[0])
        self.check(kids[0])
        a, b = self.check(kids[1]), self.check(kids[2])
        return a if a.kind == b.kind and a.kind != "null" else DYN

    def _conditionalor(self, t: Tree) -> DeclType:
        kids = self._args(t)
        if len(kids) == 1:
            return self.check(kids[0])
        for k in kids:
            self.check(k)
        return DeclType("bool")

    _conditionaland = _conditionalor

    def _relation(self, t: Tree) -> DeclType:
        kids = self._args(t)
        if len(kids) == 1:
            return self.check(kids[0])
        op, right = kids
        left_t = self.check(self._args(op)[0])
        right_t = self.check(right)
        if op.data in ("relation_eq", "relation_ne"):
            # ``_==_`` is declared (A, A) -> bool: statically different primitive types do not unify.
            prims = {"int", "uint", "double", "string", "bool", "bytes", "timestamp", "duration"}
            lk, rk = left_t.kind, right_t.kind
            if lk in prims and rk in prims and lk != rk:
                name = "_==_" if op.data == "relation_eq" else "_!=_"
                left_end = int(getattr(getattr(self._args(op)[0], "meta", None), "end_pos", 0) or 0)
                at = self.text.find(name[1:-1], left_end)
                raise _CheckError(
                    at if at >= 0 else self._op_offset(t),
                    f"found no matching overload for '{name}' applied to '({lk}, {rk})'",
                )
        return DeclType("bool")

    def _op_offset(self, t: Tree) -> int:
        meta = getattr(t, "meta", None)
        return int(getattr(meta, "start_pos", 0) or 0)

    def _binary(self, t: Tree) -> DeclType:
        kids = self._args(t)
        if len(kids) == 1:
            return self.check(kids[0])
        op, right = kids
        lt = self.check(self._args(op)[0])
        rt = self.check(right)
        if lt.kind == rt.kind and lt.kind in ("int", "uint", "double", "string", "bytes", "list"):
            return lt if lt.kind != "list" else DeclType("list", elem=DYN)
        return DYN

    _addition = _binary
    _multiplication = _binary

    def _unary(self, t: Tree) -> DeclType:
        kids = self._args(t)
        if len(kids) == 1:
            return self.check(kids[0])
        inner = self.check(kids[1])
        return DeclType("bool") if kids[0].data == "unary_not" else inner

    def _member(self, t: Tree) -> DeclType:
        return self.check(self._args(t)[0])

    _primary = _member

    def _paren_expr(self, t: Tree) -> DeclType:
        return self.check(self._args(t)[0])

    def _literal(self, t: Tree) -> DeclType:
        tok = cast(lark.Token, t.children[0])
        return DeclType(_LIT_KINDS.get(tok.type, "dyn"))

    def _list_lit(self, t: Tree) -> DeclType:
        for e in self._args(self._args(t)[0] if self._args(t) else None):
            self.check(e)
        return DeclType("list", elem=DYN)

    def _map_lit(self, t: Tree) -> DeclType:
        for e in self._args(self._args(t)[0] if self._args(t) else None):
            self.check(e)
        return DeclType("map", elem=DYN)

    def _ident(self, t: Tree) -> DeclType:
        tok = cast(lark.Token, t.children[0])
        name = str(tok)
        found = self._lookup(name)
        if found is not None:
            if name == "oldSelf" and all(name not in s for s in self.scopes[1:]):
                self.uses_old_self = True
            return found
        if name in _TYPE_IDENTS:
            return DeclType("type")
        if name in RESERVED:
            raise _CheckError(self._start(tok), f"reserved identifier: {name}")
        raise _CheckError(self._start(tok), f"undeclared reference to '{name}' (in container '')")

    def _dot_ident(self, t: Tree) -> DeclType:
        tok = cast(lark.Token, t.children[0])
        raise _CheckError(self._start(tok), f"undeclared reference to '{tok}' (in container '')")

    def _dot_ident_arg(self, t: Tree) -> DeclType:
        tok = cast(lark.Token, t.children[0])
        raise _CheckError(self._after(tok, "("), f"undeclared reference to '{tok}' (in container '')")

    def _member_object(self, t: Tree) -> DeclType:
        raise _CheckError(self._op_offset(t), "message construction is not supported")

    def _select(self, base: DeclType, name: str, tok: lark.Token) -> DeclType:
        if base.kind == "object":
            if name in base.fields:
                return base.fields[name]
            raise _CheckError(self._before(tok, "."), f"undefined field '{name}'")
        if base.kind == "map":
            return base.elem or DYN
        if base.kind in ("dyn", "null"):
            return DYN
        raise _CheckError(self._before(tok, "."), f"type '{base}' does not support field selection")

    def _member_dot(self, t: Tree) -> DeclType:
        base_tree, tok = t.children[0], cast(lark.Token, t.children[1])
        base = self.check(cast(Tree, base_tree))
        return self._select(base, str(tok), tok)

    def _member_index(self, t: Tree) -> DeclType:
        base_tree, idx_tree = self._args(t)
        base = self.check(base_tree)
        idx = self.check(idx_tree)
        if base.kind == "list":
            return base.elem or DYN
        if base.kind == "map":
            return base.elem or DYN
        if base.kind in ("object", "int", "uint", "double", "bool", "string", "bytes"):
            raise _CheckError(
                self._op_offset(idx_tree) - 1,
                f"found no matching overload for '_[_]' applied to '({base}, {idx})'",
            )
        return DYN

    def _ident_arg(self, t: Tree) -> DeclType:
        tok = cast(lark.Token, t.children[0])
        name = str(tok)
        args = self._args(self._args(t)[0] if self._args(t) else None)
        if name == "has":
            if len(args) != 1 or not self._is_select(args[0]):
                raise _CheckError(self._after(tok, "("), "invalid argument to has() macro")
            self.check(args[0])
            return DeclType("bool")
        if name not in _FUNC_RESULTS or name in ("hasValue", "value", "orValue"):
            raise _CheckError(self._after(tok, "("), f"undeclared reference to '{name}' (in container '')")
        arg_types = [self.check(a) for a in args]
        if name == "size" and arg_types and arg_types[0].kind in ("object", "int", "uint", "double", "bool"):
            raise _CheckError(
                self._after(tok, "("), f"found no matching overload for 'size' applied to '({arg_types[0]})'"
            )
        return DeclType(_FUNC_RESULTS[name]) if _FUNC_RESULTS[name] != "list" else DeclType("list", elem=DYN)

    def _is_select(self, tree: Tree) -> bool:
        node: Tree = tree
        while True:
            kids = self._args(node)
            if node.data == "member_dot":
                return True
            if node.data in (
                "expr",
                "conditionalor",
                "conditionaland",
                "relation",
                "addition",
                "multiplication",
            ):
                if len(kids) != 1:
                    return False
                node = kids[0]
            elif node.data in ("unary", "member") and len(kids) == 1:
                node = kids[0]
            else:
                return False

    def _member_dot_arg(self, t: Tree) -> DeclType:
        base_tree = cast(Tree, t.children[0])
        tok = cast(lark.Token, t.children[1])
        name = str(tok)
        arg_tree = cast(Tree, t.children[2]) if len(t.children) > 2 else None
        args = self._args(arg_tree)
        base = self.check(base_tree)
        paren = self._after(tok, "(")
        if name in _MACROS:
            return self._macro(name, base, args, paren)
        if name not in _FUNC_RESULTS:
            raise _CheckError(paren, f"undeclared reference to '{name}' (in container '')")
        arg_types = [self.check(a) for a in args]
        recv = base.kind
        bad = (
            (name in _STRING_RECEIVER and recv in _KNOWN_KINDS and recv != "string")
            or (name in _LIST_RECEIVER and recv in _KNOWN_KINDS and recv != "list")
            or (name == "size" and recv in ("object", "int", "uint", "double", "bool"))
            or (name in ("hasValue", "value", "orValue") and recv != "optional" and recv != "dyn")
            or (
                name in ("indexOf", "lastIndexOf") and recv in _KNOWN_KINDS and recv not in ("string", "list")
            )
        )
        if bad:
            shown = ", ".join(str(a) for a in arg_types)
            raise _CheckError(paren, f"found no matching overload for '{name}' applied to '{base}.({shown})'")
        if name in ("value", "orValue") and recv == "optional":
            return base.elem or DYN
        if name in ("sum", "min", "max") and recv == "list":
            return base.elem or DYN
        if name == "split":
            return DeclType("list", elem=_STRING)
        if name == "findAll":
            return DeclType("list", elem=_STRING)
        result = _FUNC_RESULTS[name]
        return DeclType(result) if result != "list" else DeclType("list", elem=DYN)

    def _macro(self, name: str, base: DeclType, args: list[Tree], paren: int) -> DeclType:
        if base.kind not in ("list", "map", "dyn"):
            raise _CheckError(paren, f"found no matching overload for '{name}' applied to '{base}'")
        if len(args) not in ((2, 3) if name in ("map", "filter") else (2,)):
            raise _CheckError(paren, f"undeclared reference to '{name}' (in container '')")
        var = self._simple_ident(args[0])
        if var is None:
            raise _CheckError(paren, "argument must be a simple name")
        elem = (base.elem or DYN) if base.kind == "list" else (_STRING if base.kind == "map" else DYN)
        self.scopes.append({var: elem})
        try:
            results = [self.check(a) for a in args[1:]]
        finally:
            self.scopes.pop()
        if name in ("all", "exists", "exists_one"):
            return DeclType("bool")
        if name == "filter":
            return DeclType("list", elem=elem)
        return DeclType("list", elem=results[-1])

    def _simple_ident(self, tree: Tree) -> str | None:
        node = tree
        while True:
            kids = self._args(node)
            if node.data == "ident":
                return str(node.children[0])
            if len(kids) != 1:
                return None
            node = kids[0]


@dataclass(frozen=True)
class CompiledRule:
    """A checked CEL expression ready to run."""

    source: str
    ast: Tree
    uses_old_self: bool
    result: DeclType

    def run(self, activation: Mapping[str, Any]) -> Any:
        """Evaluate; raises :class:`celpy.evaluation.CELEvalError` on evaluation errors."""
        program = _ENV.program(self.ast, functions=_FUNCTIONS)
        return program.evaluate(dict(activation))


def _variables(
    schema: Mapping[str, Any] | None, is_resource_root: bool, optional_old_self: bool
) -> dict[str, DeclType]:
    if schema is None:
        self_t: DeclType = DYN
    else:
        declared = schema_decl_type(schema, is_resource_root)
        if declared is None:
            raise CelCompileError(
                "rule declared on schema that does not support validation rules "
                f"type: '{schema.get('type', '')}' x-kubernetes-preserve-unknown-fields: "
                f"'{'true' if schema.get('x-kubernetes-preserve-unknown-fields') else 'false'}'"
            )
        self_t = declared
    old_t = DeclType("optional", elem=self_t) if optional_old_self else self_t
    return {"self": self_t, "oldSelf": old_t}


def _check(text: str, variables: dict[str, DeclType], prefix: str) -> tuple[Tree, DeclType, bool]:
    try:
        ast = _parse(text)
    except CELParseError as ex:
        raise CelCompileError(prefix + _syntax_error(text, ex)) from None
    checker = _Checker(text, variables)
    try:
        result = checker.check(ast)
    except _CheckError as ex:
        raise CelCompileError(prefix + _issue(text, max(ex.offset, 0), ex.message)) from None
    return ast, result, checker.uses_old_self


def compile_rule(
    rule: str,
    schema: Mapping[str, Any] | None = None,
    *,
    is_resource_root: bool = False,
    optional_old_self: bool = False,
) -> CompiledRule:
    """Compile ``rule`` for the schema node ``schema`` (``compilation.go: compileRule``).

    Raises :class:`CelCompileError` whose message is the detail apiextensions reports, e.g.
    ``compilation failed: ERROR: <input>:1:5: undefined field 'foo'`` or ``cel expression must
    evaluate to a bool``. Without ``schema`` only syntax and undeclared names are checked.
    """
    variables = _variables(schema, is_resource_root, optional_old_self)
    ast, result, old = _check(rule, variables, "compilation failed: ")
    if result.kind not in ("bool", "dyn"):
        raise CelCompileError("cel expression must evaluate to a bool")
    return CompiledRule(rule, ast, old, result)


def compile_message_expression(
    expr: str, schema: Mapping[str, Any] | None = None, *, is_resource_root: bool = False
) -> CompiledRule:
    """Compile a ``messageExpression`` (same variables as the rule; must evaluate to a string)."""
    variables = _variables(schema, is_resource_root, False)
    ast, result, old = _check(expr, variables, "messageExpression compilation failed: ")
    if result.kind not in ("string", "dyn"):
        raise CelCompileError("messageExpression must evaluate to a string")
    return CompiledRule(expr, ast, old, result)


def uses_old_self(rule: str) -> bool:
    """Whether ``rule`` references ``oldSelf`` (a transition rule); False if it does not parse."""
    try:
        _, _, old = _check(rule, {"self": DYN, "oldSelf": DYN}, "")
    except CelCompileError:
        return False
    return old


# ---------------------------------------------------------------------------------------------
# Runtime values (values.go: UnstructuredToVal)
# ---------------------------------------------------------------------------------------------


class _SetList(ct.ListType):
    """``x-kubernetes-list-type: set``: equality ignores order; ``+`` appends only new elements."""

    def __eq__(self, other: Any) -> bool:
        if not isinstance(other, list):
            return NotImplemented
        return len(self) == len(other) and all(any(_cel_eq(a, b) for b in other) for a in self)

    def __ne__(self, other: Any) -> bool:
        eq = self.__eq__(other)
        return eq if eq is NotImplemented else not eq

    __hash__ = None  # type: ignore[assignment]

    def __add__(self, other: Any) -> Any:
        out = list(self)
        for x in other:
            if not any(_cel_eq(x, y) for y in out):
                out.append(x)
        return _SetList(out)


class _MapList(ct.ListType):
    """``x-kubernetes-list-type: map``: entries are identified by their key fields (order-free ``==``)."""

    keys: tuple[str, ...] = ()

    @staticmethod
    def make(items: Sequence[Any], keys: Sequence[str]) -> _MapList:
        out = _MapList(items)
        out.keys = tuple(escape(k) or k for k in keys)
        return out

    def _key(self, item: Any) -> tuple[Any, ...]:
        if not isinstance(item, Mapping):
            return (id(item),)
        return tuple(item.get(ct.StringType(k)) for k in self.keys)

    def __eq__(self, other: Any) -> bool:
        if not isinstance(other, list):
            return NotImplemented
        if len(self) != len(other):
            return False
        for a in self:
            match = [b for b in other if self._key(b) == self._key(a)]
            if len(match) != 1 or not _cel_eq(a, match[0]):
                return False
        return True

    def __ne__(self, other: Any) -> bool:
        eq = self.__eq__(other)
        return eq if eq is NotImplemented else not eq

    __hash__ = None  # type: ignore[assignment]

    def __add__(self, other: Any) -> Any:
        out = list(self)
        for x in other:
            k = self._key(x)
            for i, y in enumerate(out):
                if self._key(y) == k:
                    out[i] = x
                    break
            else:
                out.append(x)
        return _MapList.make(out, self.keys)


class _Optional:
    """A CEL ``optional_type`` value (only ``oldSelf`` under ``optionalOldSelf: true`` is one)."""

    def __init__(self, value: Any, present: bool) -> None:
        self.val = value
        self.present = present

    def __eq__(self, other: Any) -> bool:
        if isinstance(other, _Optional):
            return self.present == other.present and (not self.present or _cel_eq(self.val, other.val))
        return False

    __hash__ = None  # type: ignore[assignment]


def _generic(value: Any) -> Any:
    return json_to_cel(value)


def _timestamp(text: str, fmt: str) -> Any:
    try:
        if fmt == "date":
            d = datetime.date.fromisoformat(text)
            return ct.TimestampType(datetime.datetime(d.year, d.month, d.day, tzinfo=datetime.UTC))
        return ct.TimestampType(text)
    except (ValueError, TypeError):
        return ct.StringType(text)


def to_cel(value: Any, schema: Mapping[str, Any] | None, is_resource_root: bool = False) -> Any:
    """Convert an unstructured JSON value to a CEL value typed by its schema node."""
    if value is None:
        return None
    s: Mapping[str, Any] = schema or {}
    if isinstance(value, bool):
        return ct.BoolType(value)
    if s.get("x-kubernetes-int-or-string"):
        if isinstance(value, int):
            return ct.IntType(value)
        if isinstance(value, str):
            return ct.StringType(value)
        return _generic(value)
    if is_resource_root:
        s = with_type_and_object_meta(s)
    t = s.get("type")
    if isinstance(value, (int, float)):
        if t == "integer" and (isinstance(value, int) or value.is_integer()):
            return ct.IntType(int(value))
        if t == "number":
            return ct.DoubleType(float(value))
        return ct.IntType(value) if isinstance(value, int) else ct.DoubleType(value)
    if isinstance(value, str):
        fmt = s.get("format") if t == "string" else None
        if fmt == "byte":
            try:
                return ct.BytesType(base64.b64decode(value, validate=True))
            except (binascii.Error, ValueError):
                return ct.StringType(value)
        if fmt == "duration":
            try:
                return ct.DurationType(value)
            except (ValueError, TypeError):
                return ct.StringType(value)
        if fmt in ("date", "date-time"):
            return _timestamp(value, fmt)
        return ct.StringType(value)
    if isinstance(value, list):
        items = s.get("items")
        item_schema = items if isinstance(items, Mapping) else None
        elems = [to_cel(v, item_schema, _embedded(item_schema)) for v in value]
        list_type = s.get("x-kubernetes-list-type")
        if list_type == "set":
            return _SetList(elems)
        if list_type == "map":
            return _MapList.make(elems, s.get("x-kubernetes-list-map-keys") or [])
        return ct.ListType(elems)
    if isinstance(value, Mapping):
        ap = s.get("additionalProperties")
        if isinstance(ap, Mapping):
            return ct.MapType({ct.StringType(k): to_cel(v, ap, _embedded(ap)) for k, v in value.items()})
        props: Mapping[str, Any] = s.get("properties") or {}
        preserve = bool(s.get("x-kubernetes-preserve-unknown-fields")) or not s
        out: dict[Any, Any] = {}
        for k, v in value.items():
            esc = escape(k)
            if esc is None:
                continue
            if k in props:
                out[ct.StringType(esc)] = to_cel(v, props[k], _embedded(props[k]))
            elif preserve:
                out[ct.StringType(esc)] = _generic(v)
        return ct.MapType(out)
    return _generic(value)


# ---------------------------------------------------------------------------------------------
# Runtime functions: heterogeneous equality and the Kubernetes CEL libraries we support
# ---------------------------------------------------------------------------------------------


def _is_num(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _kind(x: Any) -> str:
    if x is None:
        return "null"
    if isinstance(x, bool):
        return "bool"
    if isinstance(x, (int, float)):
        return "number"
    if isinstance(x, str):
        return "string"
    if isinstance(x, bytes):
        return "bytes"
    if isinstance(x, list):
        return "list"
    if isinstance(x, Mapping):
        return "map"
    if isinstance(x, datetime.datetime):
        return "timestamp"
    if isinstance(x, datetime.timedelta):
        return "duration"
    return type(x).__name__


def _cel_eq(a: Any, b: Any) -> bool:
    """cel-go heterogeneous equality: numbers compare by value, values of different kinds are unequal."""
    ka, kb = _kind(a), _kind(b)
    if ka != kb:
        return False
    if ka == "number":
        if isinstance(a, float) or isinstance(b, float):
            return float(a) == float(b)
        return int(a) == int(b)
    if isinstance(a, (_SetList, _MapList)):
        return bool(a == b)
    if isinstance(b, (_SetList, _MapList)):
        return bool(b == a)
    if ka == "list":
        return len(a) == len(b) and all(_cel_eq(x, y) for x, y in zip(a, b, strict=True))
    if ka == "map":
        return len(a) == len(b) and all(k in b and _cel_eq(v, b[k]) for k, v in a.items())
    try:
        return bool(a == b)
    except TypeError:
        return False


def _eq(a: Any, b: Any) -> Any:
    if isinstance(a, CELEvalError):
        return a
    if isinstance(b, CELEvalError):
        return b
    return ct.BoolType(_cel_eq(a, b))


def _ne(a: Any, b: Any) -> Any:
    r = _eq(a, b)
    return r if isinstance(r, CELEvalError) else ct.BoolType(not r)


def _err(message: str) -> CELEvalError:
    return CELEvalError(message, ValueError, None)


def _char_at(s: Any, i: Any) -> Any:
    if not isinstance(s, str):
        raise TypeError("no such overload")
    if i < 0 or i > len(s):
        return _err(f"index out of range: {i}")
    return ct.StringType(s[i : i + 1])


def _index_of(target: Any, x: Any, start: Any = None) -> Any:
    if isinstance(target, str):
        begin = 0 if start is None else int(start)
        if begin < 0 or begin > len(target):
            return _err(f"index out of range: {begin}")
        return ct.IntType(target.find(str(x), begin))
    if isinstance(target, list):
        for n, item in enumerate(target):
            if _cel_eq(item, x):
                return ct.IntType(n)
        return ct.IntType(-1)
    raise TypeError("no such overload")


def _last_index_of(target: Any, x: Any, end: Any = None) -> Any:
    if isinstance(target, str):
        stop = len(target) if end is None else int(end)
        if stop < 0 or stop > len(target):
            return _err(f"index out of range: {stop}")
        return ct.IntType(target.rfind(str(x), 0, stop + len(str(x))))
    if isinstance(target, list):
        for n in range(len(target) - 1, -1, -1):
            if _cel_eq(target[n], x):
                return ct.IntType(n)
        return ct.IntType(-1)
    raise TypeError("no such overload")


def _ascii(upper: bool) -> Callable[[Any], Any]:
    def fn(s: Any) -> Any:
        if not isinstance(s, str):
            raise TypeError("no such overload")
        table = str.maketrans(
            "abcdefghijklmnopqrstuvwxyz" if upper else "ABCDEFGHIJKLMNOPQRSTUVWXYZ",
            "ABCDEFGHIJKLMNOPQRSTUVWXYZ" if upper else "abcdefghijklmnopqrstuvwxyz",
        )
        return ct.StringType(s.translate(table))

    return fn


def _replace(s: Any, old: Any, new: Any, n: Any = None) -> Any:
    if not isinstance(s, str):
        raise TypeError("no such overload")
    count = -1 if n is None else int(n)
    return ct.StringType(s.replace(str(old), str(new), count))


def _split(s: Any, sep: Any, n: Any = None) -> Any:
    if not isinstance(s, str):
        raise TypeError("no such overload")
    limit = -1 if n is None else int(n)
    if limit == 0:
        return ct.ListType([])
    if str(sep) == "":
        parts = list(s)
        if limit > 0 and len(parts) > limit:
            parts = [*parts[: limit - 1], "".join(parts[limit - 1 :])]
    else:
        parts = s.split(str(sep), limit - 1 if limit > 0 else -1)
    return ct.ListType([ct.StringType(p) for p in parts])


def _substring(s: Any, start: Any, end: Any = None) -> Any:
    if not isinstance(s, str):
        raise TypeError("no such overload")
    b = int(start)
    e = len(s) if end is None else int(end)
    if b < 0 or b > len(s) or e < b or e > len(s):
        return _err(f"index out of range: {b if b < 0 or b > len(s) else e}")
    return ct.StringType(s[b:e])


def _trim(s: Any) -> Any:
    if not isinstance(s, str):
        raise TypeError("no such overload")
    return ct.StringType(s.strip())


def _join(items: Any, sep: Any = "") -> Any:
    if not isinstance(items, list) or not all(isinstance(x, str) for x in items):
        raise TypeError("no such overload")
    return ct.StringType(str(sep).join(items))


def _is_sorted(items: Any) -> Any:
    if not isinstance(items, list):
        raise TypeError("no such overload")
    return ct.BoolType(all(items[i] <= items[i + 1] for i in range(len(items) - 1)))


def _sum(items: Any) -> Any:
    if not isinstance(items, list):
        raise TypeError("no such overload")
    if not items:
        return ct.IntType(0)
    total = items[0]
    for x in items[1:]:
        total = total + x
    return total


def _extreme(pick: Callable[[Any, Any], bool]) -> Callable[[Any], Any]:
    def fn(items: Any) -> Any:
        if not isinstance(items, list):
            raise TypeError("no such overload")
        if not items:
            return _err("min/max of an empty list")
        best = items[0]
        for x in items[1:]:
            if pick(x, best):
                best = x
        return best

    return fn


def compile_regex(pattern: str) -> Any:
    """Compile with RE2 (Go's regexp semantics) when the bindings are installed."""
    if _re2 is not None:
        return _re2.compile(pattern)
    return re.compile(pattern)  # pragma: no cover


def _find(s: Any, pattern: Any) -> Any:
    if not isinstance(s, str):
        raise TypeError("no such overload")
    m = compile_regex(str(pattern)).search(s)
    return ct.StringType(m.group(0) if m else "")


def _find_all(s: Any, pattern: Any, n: Any = None) -> Any:
    if not isinstance(s, str):
        raise TypeError("no such overload")
    found = [m.group(0) for m in compile_regex(str(pattern)).finditer(s)]
    if n is not None and int(n) >= 0:
        found = found[: int(n)]
    return ct.ListType([ct.StringType(x) for x in found])


def _has_value(opt: Any) -> Any:
    if not isinstance(opt, _Optional):
        raise TypeError("no such overload")
    return ct.BoolType(opt.present)


def _opt_value(opt: Any) -> Any:
    if not isinstance(opt, _Optional):
        raise TypeError("no such overload")
    return opt.val if opt.present else _err("optional.none() dereference")


def _or_value(opt: Any, default: Any) -> Any:
    if not isinstance(opt, _Optional):
        raise TypeError("no such overload")
    return opt.val if opt.present else default


_FUNCTIONS: dict[str, Any] = {
    "_==_": _eq,
    "_!=_": _ne,
    "dyn": lambda x: x,
    "charAt": _char_at,
    "indexOf": _index_of,
    "lastIndexOf": _last_index_of,
    "lowerAscii": _ascii(upper=False),
    "upperAscii": _ascii(upper=True),
    "replace": _replace,
    "split": _split,
    "substring": _substring,
    "trim": _trim,
    "join": _join,
    "isSorted": _is_sorted,
    "sum": _sum,
    "min": _extreme(lambda a, b: bool(a < b)),
    "max": _extreme(lambda a, b: bool(a > b)),
    "find": _find,
    "findAll": _find_all,
    "hasValue": _has_value,
    "value": _opt_value,
    "orValue": _or_value,
}
assert set(_FUNC_RESULTS) <= set(_FUNCTIONS) | set(base_functions), "checker and runtime disagree"


def _eval_error_text(ex: CELEvalError) -> str:
    """The cel-go wording of an evaluation error (``types.Err`` strings)."""
    msg = str(ex.args[0]) if ex.args else "evaluation error"
    kind = ex.args[1] if len(ex.args) > 1 else None
    extra = ex.args[2] if len(ex.args) > 2 else None
    m = re.match(r"no such member in mapping: '(.*)'$", msg)
    if m:
        return f"no such key: {m.group(1)}"
    if msg == "no such key" and extra:
        return f"no such key: {extra[0]}"
    if kind is IndexError or msg == "invalid_argument":
        return "index out of bounds"
    if kind is ZeroDivisionError:
        return "modulus by zero" if "modulo" in str(extra) else "division by zero"
    if msg == "return error for overflow":
        return "integer overflow"
    if msg.startswith("found no matching overload") or msg.startswith("no such overload"):
        return "no such overload"
    if msg.startswith("undeclared reference"):
        return msg.split(" (in activation")[0]
    return msg


# ---------------------------------------------------------------------------------------------
# Field paths of rules (validation.go: ValidFieldPath)
# ---------------------------------------------------------------------------------------------


def valid_field_path(json_path: str, schema: Mapping[str, Any]) -> tuple[str, Mapping[str, Any]]:
    """Validate a rule's ``fieldPath`` against ``schema``; return the field.Path string and node.

    Raises ValueError with upstream's reason (``does not refer to a valid field`` ...).
    """
    tokens = re.findall(r"'(?:[^'\\]|\\.)*'|[.\[\]]|[^.\[\]']+", json_path)
    out = ""
    node: Mapping[str, Any] = schema
    i = 0

    def append(name: str) -> None:
        nonlocal out, node
        if node.get("properties") is not None:
            if name not in node["properties"]:
                raise ValueError("does not refer to a valid field")
            out = child(out, name)
            node = node["properties"][name]
        elif isinstance(node.get("additionalProperties"), Mapping):
            out = key(out, name)
            node = node["additionalProperties"]
        else:
            raise ValueError("does not refer to a valid field")

    while i < len(tokens):
        tok = tokens[i]
        if tok == ".":
            i += 1
            if i >= len(tokens):
                raise ValueError("unexpected end of JSON path")
            append(tokens[i])
        elif tok == "[":
            if i + 2 >= len(tokens):
                raise ValueError("unexpected end of JSON path")
            quoted = tokens[i + 1]
            if len(quoted) < 2 or quoted[0] != "'" or quoted[-1] != "'":
                raise ValueError(f"expected single quoted string but got {quoted}")
            append(re.sub(r"\\(.)", r"\1", quoted[1:-1]))
            if tokens[i + 2] != "]":
                raise ValueError(f"expected ] but got {tokens[i + 2]}")
            i += 2
        else:
            raise ValueError(f"expected [ or . but got: {tok}")
        i += 1
    return out, node


# ---------------------------------------------------------------------------------------------
# Evaluation (validation.go: Validator.validate)
# ---------------------------------------------------------------------------------------------


def _reason_error(path: str, type_: str, detail: str, reason: str | None) -> Cause:
    """``fieldErrorForReason``."""
    if reason == "FieldValueForbidden":
        return field_err("FieldValueForbidden", path, detail=detail)
    if reason == "FieldValueRequired":
        return field_err("FieldValueRequired", path, detail=detail)
    if reason == "FieldValueDuplicate":
        return field_err("FieldValueDuplicate", path, value=type_)
    return field_err("FieldValueInvalid", path, value=type_, detail=detail)


def _rule_error_string(rule: Mapping[str, Any]) -> str:
    message = str(rule.get("message") or "")
    return message.strip() if message else str(rule.get("rule", "")).strip()


def _message_or_default(rule: Mapping[str, Any]) -> str:
    message = str(rule.get("message") or "")
    if not message:
        return f"failed rule: {_rule_error_string(rule)}"
    return message.strip()


def _map_list_get(old: Any, item: Any, keys: Sequence[str]) -> Any:
    """``makeMapList(...).Get``: the old element with the same key values, if any."""
    if not isinstance(old, list) or not isinstance(item, Mapping):
        return None
    for candidate in old:
        if isinstance(candidate, Mapping) and all(
            k in item and k in candidate and item[k] == candidate[k] for k in keys
        ):
            return candidate
    return None


def evaluate_validations(
    obj: Any,
    schema: Mapping[str, Any],
    old: Any | None = None,
    path: str = "",
    *,
    is_resource_root: bool | None = None,
) -> list[Cause]:
    """Evaluate every ``x-kubernetes-validations`` rule of ``schema`` and its descendants on ``obj``.

    ``path`` is where ``obj`` sits (``""`` for the resource root, rendered ``<nil>`` as upstream).
    ``old`` is the previous object on update (None on create): transition rules (``oldSelf``) only run
    where an old value correlates.
    """
    root = (path == "") if is_resource_root is None else is_resource_root
    out: list[Cause] = []
    _validate_node(obj, schema, old, path, root, out)
    return out


def _validate_node(
    obj: Any, schema: Mapping[str, Any], old: Any, path: str, is_root: bool, out: list[Cause]
) -> None:
    if obj is None:
        return
    rules = schema.get("x-kubernetes-validations") or []
    if rules:
        _validate_expressions(obj, schema, old, path, is_root, rules, out)
    if isinstance(obj, list):
        items = schema.get("items")
        if not isinstance(items, Mapping):
            return
        map_keys = schema.get("x-kubernetes-list-map-keys") or []
        correlate = schema.get("x-kubernetes-list-type") == "map"
        for n, item in enumerate(obj):
            old_item = _map_list_get(old, item, map_keys) if correlate else None
            _validate_node(item, items, old_item, index(path, n), _embedded(items), out)
    elif isinstance(obj, Mapping):
        old_map = old if isinstance(old, Mapping) else {}
        ap = schema.get("additionalProperties")
        props: Mapping[str, Any] = schema.get("properties") or {}
        for k, v in obj.items():
            if isinstance(ap, Mapping):
                _validate_node(v, ap, old_map.get(k), key(path, k), _embedded(ap), out)
            if k in props:
                prop = props[k]
                if schema_decl_type(prop, _embedded(prop)) is None:
                    continue  # fields with unknown types are omitted from CEL validation entirely
                _validate_node(v, prop, old_map.get(k), child(path, k), _embedded(prop), out)


def _validate_expressions(
    obj: Any,
    schema: Mapping[str, Any],
    old: Any,
    path: str,
    is_root: bool,
    rules: Sequence[Mapping[str, Any]],
    out: list[Cause],
) -> None:
    type_ = str(schema.get("type", ""))
    self_val = to_cel(obj, schema, is_root)
    old_val = to_cel(old, schema, is_root) if old is not None else None
    # validationActivationWithOldSelf is used for the node when any of its rules references oldSelf;
    # message expressions see that (non-optional) activation.
    message_activation: dict[str, Any] = {"self": self_val}
    if old is not None and any(
        isinstance(r, Mapping) and uses_old_self(str(r.get("rule") or "")) for r in rules
    ):
        message_activation["oldSelf"] = old_val
    for rule in rules:
        text = str(rule.get("rule") or "") if isinstance(rule, Mapping) else ""
        if not text.strip():
            continue
        optional = bool(rule.get("optionalOldSelf"))
        try:
            compiled = compile_rule(text, schema, is_resource_root=is_root, optional_old_self=optional)
        except CelCompileError as ex:
            out.append(
                field_err("FieldValueInvalid", path, value=type_, detail=f"rule compile error: {ex.message}")
            )
            continue
        if compiled.uses_old_self and old is None and not optional:
            continue  # transition rules are evaluated only if there is a comparable existing value
        activation: dict[str, Any] = {"self": self_val}
        if compiled.uses_old_self:
            activation["oldSelf"] = _Optional(old_val, old is not None) if optional else old_val
        try:
            result = compiled.run(activation)
        except CELEvalError as ex:
            text_err = _eval_error_text(ex)
            if text_err.startswith("no such overload"):
                detail = (
                    f"'{text_err}': call arguments did not match a supported operator, function or macro "
                    f"signature for rule: {_rule_error_string(rule)}"
                )
            else:
                detail = f"{text_err} evaluating rule: {_rule_error_string(rule)}"
            out.append(field_err("FieldValueInvalid", path, value=type_, detail=detail))
            continue
        except (ArithmeticError, LookupError, TypeError, ValueError, RecursionError) as ex:
            # celpy lets a few Python errors escape; report them like any evaluation error
            detail = f"{ex} evaluating rule: {_rule_error_string(rule)}"
            out.append(field_err("FieldValueInvalid", path, value=type_, detail=detail))
            continue
        if isinstance(result, (bool, ct.BoolType)) and bool(result):
            continue  # only a true result passes; false or any non-bool value fails the rule
        current = path
        fp = str(rule.get("fieldPath") or "").strip()
        if fp:
            try:
                normalized, _ = valid_field_path(fp, schema)
                current = child(path, normalized) if normalized else path
            except ValueError:
                pass
        detail = _message_expression(rule, schema, is_root, message_activation) or _message_or_default(rule)
        out.append(_reason_error(current, type_, detail, rule.get("reason")))


def _message_expression(
    rule: Mapping[str, Any], schema: Mapping[str, Any], is_root: bool, activation: Mapping[str, Any]
) -> str | None:
    """``evalMessageExpression``: None when absent or when it fails (the message is used instead)."""
    expr = str(rule.get("messageExpression") or "")
    if not expr.strip():
        return None
    try:
        compiled = compile_message_expression(expr, schema, is_resource_root=is_root)
        value = compiled.run(activation)
    except (
        CelCompileError,
        CELEvalError,
        ArithmeticError,
        LookupError,
        TypeError,
        ValueError,
        RecursionError,
    ):
        return None
    if not isinstance(value, str):
        return None
    text = value.strip()
    # apiserver/pkg/apis/cel/config.go: MaxEvaluatedMessageExpressionSizeBytes
    if not text or len(text.encode()) > 5 * 1024 or re.search(r"[\n]+", text):
        return None
    return text
