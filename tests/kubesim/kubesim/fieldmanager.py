"""Managed fields and server-side apply, as kube-apiserver computes them.

Upstream sources this module follows (read before emulating; no code is copied):

* ``sigs.k8s.io/structured-merge-diff/v4``:
  ``fieldpath/path.go``, ``fieldpath/element.go`` (``PathElement.String``, the ``f:``/``k:``/``v:``/``i:``
  keys of ``serialize-pe.go``), ``fieldpath/serialize.go`` (FieldsV1: children sorted, ``"."`` for a
  path that is both a member and has children), ``fieldpath/set.go``
  (``EnsureNamedFieldsAreMembers``, ``RecursiveDifference``);
  ``typed/tofieldset.go`` (``toFieldSetWalker``: scalars, atomic lists/maps and list items are
  members; map keys that are not declared struct fields are members), ``typed/compare.go``
  (``compareWalker``: leaves are added/removed/modified, a non-leaf node is added or removed when it
  is absent on one side; empty-or-null on both sides is a leaf), ``typed/merge.go`` (``Merge`` with
  ``ruleKeepRHS`` and the associative-list ordering), ``typed/remove.go`` (``RemoveItems``),
  ``typed/helpers.go`` (``listItemToPathElement``: keyed items, set values, key defaults);
  ``merge/update.go``: ``Updater.Update``, ``Updater.Apply``, ``Updater.update`` (conflicts with the
  other managers, ``Removed`` taken from them), ``prune``, ``addBackOwnedItems``,
  ``addBackDanglingItems``; ``merge/conflict.go`` (``Conflict``).
* ``k8s.io/apimachinery/pkg/util/managedfields/internal``: ``fieldmanager.go`` (``Update``: the
  request's managedFields win when they decode and are not empty, else the live ones),
  ``managedfieldsupdater.go`` (the ``current-operation`` merge and the entry's ``time``),
  ``stripmeta.go`` (the metadata paths nobody owns), ``buildmanagerinfo.go`` /
  ``managedfields.go`` (``BuildManagerIdentifier``: apply entries have no apiVersion in their
  identity; ``sortEncodedManagedFields``), ``conflict.go`` (``NewConflictError``,
  ``printManager``), ``lastappliedmanager.go`` and ``lastappliedupdater.go`` (client-side apply
  interoperability for the ``kubectl`` manager), ``structuredmerge.go`` and
  ``versioncheck.go`` (the errors of a bad apply body).
* ``kube-openapi/pkg/schemaconv/smd.go``: ``getListElementRelationship`` (``x-kubernetes-list-type``,
  else ``merge`` patch strategy with a merge key is a map keyed by it, ``merge`` without one a set,
  anything else atomic) and ``x-kubernetes-map-type``.

Field sets are Python sets of paths; a path is a tuple of path elements ``("f", name)``,
``("k", ((key, json), ...))``, ``("v", json)`` or ``("i", index)``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from . import k8sdefs
from .errors import StatusError

JSON = dict[str, Any]
PE = tuple[Any, ...]
Path = tuple[PE, ...]
FieldSet = set[Path]


class _Missing:
    """Go's nil ``value.Value``: the field is absent (distinct from a JSON ``null``)."""

    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()

#: apimachinery/pkg/apis/meta/v1/validation: FieldManagerMaxLength.
FIELD_MANAGER_MAX_LENGTH = 128
#: kubectl's annotation (lastappliedmanager.go: LastAppliedConfigAnnotation).
LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
#: The manager whose applies upgrade client-side apply (lastappliedmanager.go, lastappliedupdater.go).
KUBECTL_MANAGER = "kubectl"

#: stripmeta.go: NewStripMetaManager: paths no manager owns (exact paths, not recursive).
_STRIPPED: frozenset[Path] = frozenset(
    {
        (("f", "apiVersion"),),
        (("f", "kind"),),
        (("f", "metadata"),),
        *((("f", "metadata"), ("f", k)) for k in (
            "name", "namespace", "creationTimestamp", "selfLink", "uid", "clusterName",
            "generation", "managedFields", "resourceVersion",
        )),
    }
)  # fmt: skip

#: Defaults of list-map key fields in the built-in schemas (the upstream OpenAPI v3 carries
#: ``default: "TCP"`` on these ``protocol`` keys; kubernetes-validate's v2-derived schemas do not).
_KEY_DEFAULTS = {"protocol": "TCP"}


class TypedError(Exception):
    """A value that does not fit its schema (``typed`` ValidationErrors), with its path prefix."""


# --------------------------------------------------------------------------------------------
# Schemas: the built-in OpenAPI (with $refs) or a CRD's structural schema; None is "deduced".
# --------------------------------------------------------------------------------------------

Node = dict[str, Any] | None


def _deref(node: JSON) -> JSON:
    if "$ref" not in node:
        return node
    target = k8sdefs.resolve(node)
    # extensions written next to the $ref (x-kubernetes-patch-strategy, list types) still apply
    extra = {k: v for k, v in node.items() if k.startswith("x-kubernetes")}
    return {**target, **extra} if extra else target


def _types(n: JSON) -> set[str]:
    t = n.get("type")
    if t is None:
        return set()
    if isinstance(t, str):
        return {t}
    return {x for x in t if x != "null"}


@dataclass(frozen=True)
class Atom:
    kind: str  # "scalar" | "atomic" | "list" | "map"
    node: JSON | None = None
    list_type: str = ""  # "map" | "set" for associative lists
    keys: tuple[str, ...] = ()


_SCALAR = Atom("scalar")
_DEDUCED_MAP = Atom("map")
_DEDUCED_LIST = Atom("atomic")


def classify(node: Node, value: Any) -> Atom:
    """The schema's atom for a value (``schema.Resolve`` + ``deduceAtom``)."""
    if node is None:
        if isinstance(value, dict):
            return _DEDUCED_MAP
        if isinstance(value, list):
            return _DEDUCED_LIST  # deduced lists are atomic
        return _SCALAR
    n = _deref(node)
    if n.get("x-kubernetes-int-or-string") or n.get("format") == "int-or-string":
        return _SCALAR
    types = _types(n)
    if "array" in types:
        lt = n.get("x-kubernetes-list-type")
        keys: tuple[str, ...] = ()
        if lt is None:
            # schemaconv/smd.go: getListElementRelationship falls back to the patch strategy.
            strategies = str(n.get("x-kubernetes-patch-strategy", "")).split(",")
            if "merge" in strategies:
                mk = n.get("x-kubernetes-patch-merge-key")
                lt, keys = ("map", (mk,)) if mk else ("set", ())
            else:
                lt = "atomic"
        elif lt == "map":
            keys = tuple(n.get("x-kubernetes-list-map-keys") or ())
        if lt == "atomic":
            return Atom("atomic", n)
        return Atom("list", n, lt, keys)
    if "object" in types or "properties" in n or "additionalProperties" in n:
        if n.get("x-kubernetes-map-type") == "atomic":
            return Atom("atomic", n)
        return Atom("map", n)
    if not types:
        return classify(None, value)
    return _SCALAR


def child(atom: Atom, key: str, root: bool, *, strict: bool, path: Path) -> tuple[Node, bool]:
    """The schema of a map's key and whether it is a declared struct field (``FindField``)."""
    if root and key == "metadata":
        return {"$ref": "#/$defs/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"}, True
    n = atom.node
    if n is None:
        return None, False
    props = n.get("properties") or {}
    if key in props:
        return props[key], True
    if root and key in ("apiVersion", "kind"):
        return {"type": "string"}, True
    ap = n.get("additionalProperties")
    if isinstance(ap, dict):
        return ap, False
    if ap is True or n.get("x-kubernetes-preserve-unknown-fields") or not props:
        return None, False
    if n.get("x-kubernetes-embedded-resource") and key in ("apiVersion", "kind", "metadata"):
        return None, True
    if strict:
        raise TypedError(f"{path_string((*path, ('f', key)))}: field not declared in schema")
    return None, False


def _elem(atom: Atom) -> Node:
    return (atom.node or {}).get("items")


def _canon(v: Any) -> str:
    """value.ToString: the JSON form of a value (keys sorted)."""
    if isinstance(v, bool) or v is None:
        return json.dumps(v)
    if isinstance(v, float) and v.is_integer() and not isinstance(v, bool):
        return json.dumps(v)
    return json.dumps(v, sort_keys=True, separators=(",", ":"))


def item_pe(atom: Atom, item: Any, index: int, path: Path) -> PE:
    """helpers.go: listItemToPathElement."""
    if atom.list_type == "map" and atom.keys:
        if not isinstance(item, dict):
            raise TypedError(f"{path_string(path)}: element {index}: expected map, got {_go_kind(item)}")
        key = []
        for k in sorted(atom.keys):
            v = item.get(k, MISSING)
            if v is MISSING or v is None:
                default = ((_deref(_elem(atom) or {}).get("properties") or {}).get(k) or {}).get("default")
                if (
                    default is None
                    and k in _KEY_DEFAULTS
                    and atom.node is not None
                    and "$ref" in (_elem(atom) or {})
                ):
                    default = _KEY_DEFAULTS[k]
                if default is None:
                    raise TypedError(
                        f"{path_string(path)}: element {index}: associative list with keys has an element "
                        f'that omits key field "{k}" (and doesn\'t have default value)'
                    )
                v = default
            key.append((k, _canon(v)))
        return ("k", tuple(key))
    if atom.list_type in ("set", "map"):
        if isinstance(item, dict | list):
            raise TypedError(
                f"{path_string(path)}: element {index}: associative list without keys has an element "
                f"that's a {'map' if isinstance(item, dict) else 'list'} type"
            )
        return ("v", _canon(item))
    return ("i", index)


def _go_kind(v: Any) -> str:
    return "map" if isinstance(v, dict) else "list" if isinstance(v, list) else "scalar"


# --------------------------------------------------------------------------------------------
# Paths: printing (conflict messages) and FieldsV1
# --------------------------------------------------------------------------------------------


def pe_string(pe: PE) -> str:
    """fieldpath/element.go: PathElement.String."""
    t, v = pe
    if t == "f":
        return f".{v}"
    if t == "k":
        return "[" + ",".join(f"{k}={val}" for k, val in v) + "]"
    if t == "v":
        return f"[={v}]"
    return f"[{v}]"


def path_string(path: Path) -> str:
    return "".join(pe_string(pe) for pe in path)


def _pe_key(pe: PE) -> str:
    """serialize-pe.go: SerializePathElement."""
    t, v = pe
    if t == "f":
        return f"f:{v}"
    if t == "k":
        return "k:{" + ",".join(f"{json.dumps(k)}:{val}" for k, val in v) + "}"
    if t == "v":
        return f"v:{v}"
    return f"i:{v}"


def _pe_order(pe: PE) -> tuple[int, Any]:
    # element.go: PathElement.Compare: field names, then keys, then values, then indexes.
    t, v = pe
    rank = {"f": 0, "k": 1, "v": 2, "i": 3}[t]
    return (rank, v if t != "i" else (v,))


def _parse_pe(key: str) -> PE:
    kind, _, rest = key.partition(":")
    if kind == "f":
        return ("f", rest)
    if kind == "k":
        obj = json.loads(rest)
        if not isinstance(obj, dict):
            raise ValueError(f"invalid key {key!r}")
        return ("k", tuple(sorted((k, _canon(v)) for k, v in obj.items())))
    if kind == "v":
        return ("v", _canon(json.loads(rest)))
    if kind == "i":
        return ("i", int(rest))
    raise ValueError(f"unknown path element {key!r}")


def encode_fields(s: FieldSet) -> JSON:
    """fieldpath/serialize.go: Set.ToJSON (the fieldsV1 object)."""
    tree: dict[PE, Any] = {}
    members: set[Path] = set(s)
    for p in sorted(s, key=len):
        node = tree
        for pe in p:
            node = node.setdefault(pe, {})

    def emit(node: dict[PE, Any], prefix: Path) -> JSON:
        out: JSON = {}
        for pe in sorted(node, key=_pe_order):
            p = (*prefix, pe)
            kids = node[pe]
            if kids:
                inner = emit(kids, p)
                out[_pe_key(pe)] = {".": {}, **inner} if p in members else inner
            else:
                out[_pe_key(pe)] = {}
        return out

    return emit(tree, ())


def decode_fields(obj: Any) -> FieldSet:
    """fieldpath/serialize.go: Set.FromJSON."""
    out: FieldSet = set()

    def walk(node: Any, prefix: Path) -> None:
        if not isinstance(node, dict):
            raise ValueError("expected an object")
        for k, v in node.items():
            if k == ".":
                if prefix:
                    out.add(prefix)
                continue
            p = (*prefix, _parse_pe(k))
            if not isinstance(v, dict):
                raise ValueError("expected an object")
            if not v:
                out.add(p)
            else:
                walk(v, p)

    walk(obj, ())
    return out


# --------------------------------------------------------------------------------------------
# typed: ToFieldSet, Compare, Merge, RemoveItems
# --------------------------------------------------------------------------------------------


def to_field_set(value: Any, schema: Node, *, strict: bool = False) -> FieldSet:
    """typed/tofieldset.go: the fields a (partial) object sets."""
    out: FieldSet = set()
    _tfs(value, schema, (), out, strict)
    return out


def _tfs(value: Any, node: Node, path: Path, out: FieldSet, strict: bool) -> None:
    atom = classify(node, value)
    if atom.kind in ("scalar", "atomic"):
        if path:
            out.add(path)
        return
    if atom.kind == "list":
        if not isinstance(value, list):
            return
        seen: set[PE] = set()
        for i, item in enumerate(value):
            pe = item_pe(atom, item, i, path)
            if pe in seen and strict:
                raise TypedError(f"{path_string(path)}: duplicate entries for key {pe_string(pe)}")
            seen.add(pe)
            p = (*path, pe)
            _tfs(item, _elem(atom), p, out, strict)
            out.add(p)
        return
    if not isinstance(value, dict):
        return
    for k, v in value.items():
        sub, declared = child(atom, k, not path, strict=strict, path=path)
        p = (*path, ("f", k))
        _tfs(v, sub, p, out, strict)
        if not declared:
            out.add(p)


@dataclass
class Comparison:
    added: FieldSet = field(default_factory=set)
    modified: FieldSet = field(default_factory=set)
    removed: FieldSet = field(default_factory=set)


def go_equal(a: Any, b: Any) -> bool:
    """value.Equals: numbers compare by value, a bool is never a number."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return float(a) == float(b)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(go_equal(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(go_equal(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and a == b


def compare(lhs: Any, rhs: Any, schema: Node, *, zero_structs: bool = False) -> Comparison:
    """typed/compare.go: TypedValue.Compare.

    ``zero_structs`` compares against the zero value of a built-in Go type (the live object of a
    create): a struct-typed field absent on the left counts as an empty struct, a required list
    as a null one, so neither is "added" itself (only their leaves are).
    """
    c = Comparison()
    _cmp(lhs, rhs, schema, (), c, zero_structs, False)
    return c


def _cmp(left: Any, r: Any, node: Node, path: Path, c: Comparison, zero: bool, zero_present: bool) -> None:
    atom = classify(node, r if r is not MISSING else left)
    leaf = atom.kind in ("scalar", "atomic")
    if atom.kind == "list":
        lv = left if isinstance(left, list) else None
        rv = r if isinstance(r, list) else None
        bad = (left not in (MISSING, None) and lv is None) or (r not in (MISSING, None) and rv is None)
        leaf = bad or (not lv and not rv)
    elif atom.kind == "map":
        lm = left if isinstance(left, dict) else None
        rm = r if isinstance(r, dict) else None
        bad = (left not in (MISSING, None) and lm is None) or (r not in (MISSING, None) and rm is None)
        leaf = bad or (not lm and not rm)
    if leaf:
        if not path:
            return
        if left is MISSING:
            c.added.add(path)
        elif r is MISSING:
            c.removed.add(path)
        elif not go_equal(left, r):
            c.modified.add(path)
        return
    if atom.kind == "list":
        elem = _elem(atom)
        lvals: dict[PE, Any] = {}
        for i, item in enumerate(left if isinstance(left, list) else []):
            try:
                pe = item_pe(atom, item, i, path)
            except TypedError:
                continue
            lvals.setdefault(pe, item)
        rseen: set[PE] = set()
        for i, item in enumerate(r if isinstance(r, list) else []):
            try:
                pe = item_pe(atom, item, i, path)
            except TypedError:
                continue
            if pe in rseen:
                continue
            rseen.add(pe)
            _cmp(lvals.get(pe, MISSING), item, elem, (*path, pe), c, False, False)
        for pe, item in lvals.items():
            if pe not in rseen:
                _cmp(item, MISSING, elem, (*path, pe), c, False, False)
    else:
        lm = left if isinstance(left, dict) else {}
        rm = r if isinstance(r, dict) else {}
        required = set((atom.node and _deref(atom.node).get("required")) or ()) if zero else set()
        for k in [*lm, *(k for k in rm if k not in lm)]:
            sub, _ = child(atom, k, not path, strict=False, path=path)
            lk = lm.get(k, MISSING)
            sub_zero = False
            if zero and lk is MISSING and sub is not None:
                sa = classify(sub, rm.get(k))
                # the zero Go struct has every struct field ({}), and null for required lists
                sub_zero = (sa.kind == "map" and bool(_deref(sub).get("properties"))) or (
                    sa.kind == "list" and k in required
                )
            _cmp(lk, rm.get(k, MISSING), sub, (*path, ("f", k)), c, zero and sub_zero, sub_zero)
    if path and not zero_present:
        if left is MISSING:
            c.added.add(path)
        elif r is MISSING:
            c.removed.add(path)


def merge(lhs: Any, rhs: Any, schema: Node) -> Any:
    """typed/merge.go: TypedValue.Merge with ruleKeepRHS (the applied config over the live object)."""
    return _merge(lhs, rhs, schema, ())


def _merge(left: Any, r: Any, node: Node, path: Path) -> Any:
    if r is MISSING:
        return left
    if left is MISSING:
        return r
    atom = classify(node, r)
    if atom.kind in ("scalar", "atomic"):
        return r
    if atom.kind == "list":
        if r is None and isinstance(left, list):
            return left
        if not isinstance(left, list) or not isinstance(r, list):
            return r
        return _merge_list(left, r, atom, path)
    if r is None and isinstance(left, dict):
        return left
    if not isinstance(left, dict) or not isinstance(r, dict):
        return r
    out = {}
    for k in [*left, *(k for k in r if k not in left)]:
        sub, _ = child(atom, k, not path, strict=False, path=path)
        out[k] = _merge(left.get(k, MISSING), r.get(k, MISSING), sub, (*path, ("f", k)))
    return out


def _index(atom: Atom, items: list[Any], path: Path) -> tuple[list[PE], dict[PE, Any]]:
    order: list[PE] = []
    vals: dict[PE, Any] = {}
    for i, item in enumerate(items):
        try:
            pe = item_pe(atom, item, i, path)
        except TypedError:
            continue
        if pe in vals:
            continue
        vals[pe] = item
        order.append(pe)
    return order, vals


def _merge_list(left: list[Any], r: list[Any], atom: Atom, path: Path) -> list[Any]:
    # merge.go: mergingWalker.visitListItems: items of both, in an order that keeps the
    # live order unless the config reorders the items it shares with it.
    elem = _elem(atom)
    lorder, lvals = _index(atom, left, path)
    rorder, rvals = _index(atom, r, path)
    shared = [pe for pe in rorder if pe in lvals]
    nxt = shared.pop(0) if shared else None
    out: list[Any] = []
    li = ri = 0
    while li < len(lorder) or ri < len(rorder):
        if li < len(lorder) and ri < len(rorder):
            pe = lorder[li]
            if pe == rorder[ri]:
                out.append(_merge(lvals[pe], rvals[pe], elem, (*path, pe)))
                li += 1
                ri += 1
                nxt = shared.pop(0) if shared else None
                continue
            if pe in rvals and nxt is not None and nxt != pe:
                li += 1
                continue
        if li < len(lorder):
            pe = lorder[li]
            if pe not in rvals:
                out.append(lvals[pe])
                li += 1
                continue
        if ri < len(rorder):
            pe = rorder[ri]
            out.append(_merge(lvals.get(pe, MISSING), rvals[pe], elem, (*path, pe)))
            ri += 1
            if nxt is not None and nxt == pe:
                nxt = shared.pop(0) if shared else None
            continue
        li += 1  # a shared live item already merged: nothing left to take on the right
    return out


def remove_items(value: Any, items: FieldSet, schema: Node) -> Any:
    """typed/remove.go: RemoveItems: drop each member of ``items`` (whole subtrees)."""
    if not items:
        return value
    prefixes = {p[:i] for p in items for i in range(1, len(p))}
    return _remove(value, items, prefixes, schema, ())


def _remove(v: Any, items: FieldSet, prefixes: set[Path], node: Node, path: Path) -> Any:
    atom = classify(node, v)
    if atom.kind == "list" and isinstance(v, list):
        out_l = []
        for i, item in enumerate(v):
            try:
                pe = item_pe(atom, item, i, path)
            except TypedError:
                out_l.append(item)
                continue
            p = (*path, pe)
            if p in items:
                continue
            out_l.append(_remove(item, items, prefixes, _elem(atom), p) if p in prefixes else item)
        return out_l
    if atom.kind == "map" and isinstance(v, dict):
        out: JSON = {}
        for k, x in v.items():
            p = (*path, ("f", k))
            if p in items:
                continue
            if p in prefixes:
                sub, _ = child(atom, k, not path, strict=False, path=path)
                x = _remove(x, items, prefixes, sub, p)
            out[k] = x
        return out
    return v


def ensure_named_fields(s: FieldSet, schema: Node) -> FieldSet:
    """fieldpath/set.go: EnsureNamedFieldsAreMembers: declared struct fields on the way are members."""
    out = set(s)
    for p in s:
        node: Node = schema
        for i, pe in enumerate(p[:-1]):
            atom = classify(node, {} if pe[0] == "f" else [])
            if pe[0] == "f":
                try:
                    node, declared = child(atom, pe[1], i == 0, strict=False, path=p[:i])
                except TypedError:
                    break
                if declared and atom.kind == "map":
                    out.add(p[: i + 1])
            else:
                node = _elem(atom)
    return out


def recursive_difference(s: FieldSet, drop: FieldSet) -> FieldSet:
    """set.go: RecursiveDifference: paths at or under any path of ``drop`` go."""
    if not drop:
        return s
    return {p for p in s if not any(p[:i] in drop for i in range(1, len(p) + 1))}


# --------------------------------------------------------------------------------------------
# Managers: the decoded managedFields
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ManagerKey:
    """buildmanagerinfo.go / BuildManagerIdentifier: apply entries are keyed without apiVersion."""

    manager: str
    operation: str
    api_version: str
    subresource: str


@dataclass
class Entry:
    fields: FieldSet
    api_version: str
    time: str | None


Managers = dict[ManagerKey, Entry]


def manager_key(manager: str, operation: str, api_version: str, subresource: str) -> ManagerKey:
    return ManagerKey(manager, operation, "" if operation == "Apply" else api_version, subresource)


def decode_managed(entries: Any) -> Managers:
    """managedfields.go: DecodeManagedFields; raises ValueError on a malformed entry."""
    out: Managers = {}
    if not entries:
        return out
    if not isinstance(entries, list):
        raise ValueError("managedFields must be a list")
    for e in entries:
        if not isinstance(e, dict):
            raise ValueError("invalid managedFields entry")
        ft = e.get("fieldsType", "")
        if ft not in ("FieldsV1", ""):
            raise ValueError(f'invalid fieldsType "{ft}"')
        fields = decode_fields(e.get("fieldsV1") or {})
        op = e.get("operation", "")
        key = manager_key(
            str(e.get("manager", "")), str(op), str(e.get("apiVersion", "")), str(e.get("subresource", ""))
        )
        out[key] = Entry(fields, str(e.get("apiVersion", "")), e.get("time"))
    return out


def encode_managed(managers: Managers) -> list[JSON]:
    """managedfields.go: encodeManagedFields + sortEncodedManagedFields."""
    entries = []
    for key, e in managers.items():
        d: JSON = {"manager": key.manager, "operation": key.operation, "apiVersion": e.api_version}
        if e.time:
            d["time"] = e.time
        d["fieldsType"] = "FieldsV1"
        d["fieldsV1"] = encode_fields(e.fields)
        if key.subresource:
            d["subresource"] = key.subresource
        entries.append(d)
    entries.sort(
        key=lambda d: (
            d["operation"],
            d.get("time") or "",
            d["manager"],
            d["apiVersion"],
            d.get("subresource", ""),
        )
    )
    return entries


#: capmanagers.go: DefaultMaxUpdateManagers and the bucket the oldest updaters are merged into.
MAX_UPDATE_MANAGERS = 10
ANCIENT_CHANGES = "ancient-changes"


def cap_update_managers(managers: Managers, limit: int = MAX_UPDATE_MANAGERS) -> Managers:
    """capmanagers.go: capUpdateManagers: over ``limit`` Update entries, the oldest are merged,
    per apiVersion, into an ``ancient-changes`` entry (which takes the newest merged time)."""
    updaters = [k for k in managers if k.operation != "Apply"]
    if len(updaters) <= limit:
        return managers
    out = dict(managers)
    updaters.sort(key=lambda k: (out[k].time or "", _identifier(k)))
    first_of_version: dict[str, ManagerKey] = {}
    length = len(updaters)
    for key in updaters:
        if length <= limit:
            break
        entry = out[key]
        version = entry.api_version
        bucket = ManagerKey(ANCIENT_CHANGES, "Update", version, "")
        if version in first_of_version:
            if bucket not in out:
                out[bucket] = out.pop(first_of_version[version])
            merged = Entry(entry.fields | out[bucket].fields, version, entry.time)
            del out[key]
            out[bucket] = merged
            length -= 1
        else:
            first_of_version[version] = key
    return out


def _strip(managers: Managers) -> None:
    for e in managers.values():
        e.fields -= _STRIPPED


def _without_meta(obj: JSON) -> JSON:
    out = dict(obj)
    meta = dict(out.get("metadata") or {})
    meta.pop("managedFields", None)
    out["metadata"] = meta
    return out


def _exclude(c: Comparison, ignored: FieldSet) -> Comparison:
    return Comparison(
        recursive_difference(c.added, ignored) - _STRIPPED,
        recursive_difference(c.modified, ignored) - _STRIPPED,
        recursive_difference(c.removed, ignored) - _STRIPPED,
    )


@dataclass
class Conflict:
    key: ManagerKey
    time: str | None
    path: Path


class ConflictError(Exception):
    def __init__(self, conflicts: list[Conflict]) -> None:
        super().__init__("conflicts")
        self.conflicts = conflicts


def _take_from_others(managers: Managers, workflow: ManagerKey, c: Comparison, force: bool) -> Managers:
    """merge/update.go: Updater.update: conflicts with, and removals from, the other managers."""
    changed = c.modified | c.added
    conflicts: dict[ManagerKey, FieldSet] = {}
    for key, e in managers.items():
        if key == workflow:
            continue
        cs = e.fields & changed
        if cs:
            conflicts[key] = cs
    if conflicts and not force:
        found = [
            Conflict(key, managers[key].time, p)
            for key, cs in conflicts.items()
            for p in sorted(cs, key=_path_order)
        ]
        raise ConflictError(found)
    out: Managers = {}
    for key, e in managers.items():
        if key == workflow:
            out[key] = e
            continue
        fields = e.fields - conflicts.get(key, set()) - c.removed
        if fields:
            out[key] = Entry(fields, e.api_version, e.time)
    return out


def _path_order(p: Path) -> list[tuple[int, Any]]:
    return [_pe_order(pe) for pe in p]


def update(
    live: JSON,
    new: JSON,
    managers: Managers,
    key: ManagerKey,
    api_version: str,
    schema: Node,
    ignored: FieldSet,
    now: str,
    *,
    creating_builtin: bool = False,
) -> Managers:
    """An Update operation (create, update, non-apply patch): managedfieldsupdater.go + Updater.Update."""
    c = _exclude(
        compare(_without_meta(live), _without_meta(new), schema, zero_structs=creating_builtin),
        ignored,
    )
    workflow = ManagerKey("\x00current-operation", "Update", api_version, "")
    managers = _take_from_others(managers, workflow, c, True)
    current = (c.modified | c.added) - c.removed
    if current:
        prev = managers.get(key)
        fields = current | (prev.fields if prev else set())
        managers[key] = Entry(fields, api_version, now)
    _strip(managers)
    return cap_update_managers({k: e for k, e in managers.items() if e.fields})


def apply(
    live: JSON,
    config: JSON,
    managers: Managers,
    key: ManagerKey,
    api_version: str,
    schema: Node,
    ignored: FieldSet,
    now: str,
    force: bool,
) -> tuple[JSON, Managers]:
    """merge/update.go: Updater.Apply, with lastappliedmanager.go's upgrade for ``kubectl``."""
    try:
        return _apply(live, config, managers, key, api_version, schema, ignored, now, force)
    except ConflictError as e:
        if key.manager != KUBECTL_MANAGER:
            raise
        allowed = _allowed_from_last_applied(live, schema)
        if allowed is None or any(cf.path not in allowed for cf in e.conflicts):
            if allowed is not None:
                e.conflicts = [cf for cf in e.conflicts if cf.path not in allowed]
            raise
        return _apply(live, config, managers, key, api_version, schema, ignored, now, True)


def _allowed_from_last_applied(live: JSON, schema: Node) -> FieldSet | None:
    """lastappliedmanager.go: allowedConflictsFromLastApplied."""
    raw = ((live.get("metadata") or {}).get("annotations") or {}).get(LAST_APPLIED)
    if not raw:
        return None
    try:
        last = json.loads(raw)
        last_set = to_field_set(last, schema)
        c = compare(last, _without_meta(live), schema)
    except (ValueError, TypedError):
        return None
    return last_set - c.modified


def _apply(
    live: JSON,
    config: JSON,
    managers: Managers,
    key: ManagerKey,
    api_version: str,
    schema: Node,
    ignored: FieldSet,
    now: str,
    force: bool,
) -> tuple[JSON, Managers]:
    managers = {k: Entry(set(e.fields), e.api_version, e.time) for k, e in managers.items()}
    live_plain = _without_meta(live)
    merged = merge(live_plain, config, schema)
    last = managers.get(key)
    applied = recursive_difference(to_field_set(config, schema, strict=True), ignored) - _STRIPPED
    managers[key] = Entry(applied, api_version, last.time if last else None)
    merged = _prune(merged, managers, last.fields if last else set(), schema)
    c = _exclude(compare(live_plain, merged, schema), ignored)
    managers = _take_from_others(managers, key, c, force)
    if not go_equal(live_plain, merged):
        managers[key].time = now
    if not managers[key].fields:
        del managers[key]
    return merged, cap_update_managers(managers)


def _prune(merged: JSON, managers: Managers, last: FieldSet, schema: Node) -> JSON:
    """merge/update.go: Updater.prune with addBackOwnedItems and addBackDanglingItems."""
    if not last:
        return merged
    last_e = ensure_named_fields(last, schema)
    pruned = remove_items(merged, last_e, schema)
    owned: FieldSet = set()
    for e in managers.values():
        owned |= e.fields
    merged_set = ensure_named_fields(to_field_set(merged, schema), schema)
    pruned_set = ensure_named_fields(to_field_set(pruned, schema), schema)
    pruned = remove_items(merged, merged_set - (pruned_set | ensure_named_fields(owned, schema)), schema)
    pruned_set = ensure_named_fields(to_field_set(pruned, schema), schema)
    result: JSON = remove_items(merged, (merged_set - pruned_set) & last_e, schema)
    return result


def build_last_applied(config: JSON) -> str:
    """lastappliedupdater.go: buildLastApplied: the applied object without the annotation itself."""
    obj = json.loads(json.dumps(config))
    meta = obj.get("metadata")
    if isinstance(meta, dict) and isinstance(meta.get("annotations"), dict):
        meta["annotations"].pop(LAST_APPLIED, None)
    return json.dumps(obj, sort_keys=True, separators=(",", ":")) + "\n"


# --------------------------------------------------------------------------------------------
# Errors and names
# --------------------------------------------------------------------------------------------


def print_manager(key: ManagerKey, time: str | None, api_version: str) -> str:
    """conflict.go: printManager (the identifier carries no time: BuildManagerIdentifier drops it)."""
    s = json.dumps(key.manager)
    if key.subresource:
        s = f"{s} with subresource {json.dumps(key.subresource)}"
    if key.operation == "Update":
        return f"{s} using {api_version}"
    return s


def conflict_error(conflicts: list[Conflict], managers: Managers) -> StatusError:
    """conflict.go: NewConflictError / getConflictMessage; errors.NewApplyConflict."""

    def who(cf: Conflict) -> str:
        e = managers.get(cf.key)
        return print_manager(cf.key, cf.time, e.api_version if e else cf.key.api_version)

    causes = [
        {
            "reason": "FieldManagerConflict",
            "message": f"conflict with {who(cf)}",
            "field": path_string(cf.path),
        }
        for cf in conflicts
    ]
    if len(conflicts) == 1:
        msg = f"Apply failed with 1 conflict: conflict with {who(conflicts[0])}: {path_string(conflicts[0].path)}"
    else:
        by: dict[str, list[str]] = {}
        ident: dict[str, str] = {}
        for cf in conflicts:
            ident_key = _identifier(cf.key)
            ident[ident_key] = who(cf)
            by.setdefault(ident_key, []).append(path_string(cf.path))
        lines: list[str] = []
        for m in sorted(by):
            lines.append(f"conflicts with {ident[m]}:")
            lines.extend(f"- {p}" for p in by[m])
        msg = f"Apply failed with {len(conflicts)} conflicts: " + "\n".join(lines)
    return StatusError(409, "Conflict", msg, {"causes": causes})


def _identifier(key: ManagerKey) -> str:
    """The JSON identifier upstream sorts managers by (BuildManagerIdentifier: manager, operation, apiVersion, ...)."""
    d: JSON = {"manager": key.manager, "operation": key.operation}
    if key.api_version:
        d["apiVersion"] = key.api_version
    if key.subresource:
        d["subresource"] = key.subresource
    return json.dumps(d, separators=(",", ":"))


def manager_from_user_agent(user_agent: str) -> str:
    """handlers/create.go: managerOrUserAgent / prefixFromUserAgent."""
    out = ""
    for ch in user_agent.split("/")[0]:
        if not ch.isprintable():
            continue
        if len((out + ch).encode()) > FIELD_MANAGER_MAX_LENGTH:
            break
        out += ch
    return out


def validate_field_manager(manager: str) -> list[tuple[str, str, Any]]:
    """apimachinery/pkg/apis/meta/v1/validation: ValidateFieldManager: (type, detail, value)."""
    errs: list[tuple[str, str, Any]] = []
    if len(manager.encode()) > FIELD_MANAGER_MAX_LENGTH:
        errs.append(("FieldValueTooLong", f"may not be more than {FIELD_MANAGER_MAX_LENGTH} bytes", None))
    for i, ch in enumerate(manager):
        if not ch.isprintable():
            errs.append(
                ("FieldValueInvalid", f"invalid character U+{ord(ch):04X} (at position {i})", manager)
            )
    return errs


def reset_fields(status_subresource: bool, subresource: str, obj_keys: Iterable[str]) -> FieldSet:
    """The strategy's GetResetFields: what a write to this endpoint may not set."""
    if subresource == "status":
        return {(("f", k),) for k in obj_keys if k not in ("status", "metadata", "apiVersion", "kind")}
    if status_subresource:
        return {(("f", "status"),)}
    return set()
