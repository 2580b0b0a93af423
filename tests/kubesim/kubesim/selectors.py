"""Label and field selectors, parsed and matched as apimachinery does.

Label selectors follow ``k8s.io/apimachinery/pkg/labels/selector.go`` (``Parse``): equality
(``=``, ``==``, ``!=``), set-based (``in``, ``notin``), existence (``key``, ``!key``), comma-joined
requirements all of which must hold. Field selectors follow ``pkg/fields/selector.go``
(``ParseSelector``): only ``=``, ``==`` and ``!=``, over the fields each resource's strategy
exposes (``GetAttrs`` / ``ToSelectableFields`` in ``pkg/registry/*/strategy.go``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from .errors import StatusError, bad_request

_KEY_RE = re.compile(
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$"
)
_VALUE_RE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")


@dataclass(frozen=True)
class Requirement:
    key: str
    op: str  # "=", "!=", "in", "notin", "exists", "!"
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        has = self.key in labels
        if self.op == "exists":
            return has
        if self.op == "!":
            return not has
        if self.op in ("=", "in"):
            return has and labels[self.key] in self.values
        # "!=" and "notin" match objects without the key too (selector.go Requirement.Matches).
        return not has or labels[self.key] not in self.values


def _split_top(expr: str) -> list[str]:
    """Split on commas that are not inside parentheses."""
    parts, depth, cur = [], 0, []
    for ch in expr:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    parts.append("".join(cur))
    return [p.strip() for p in parts if p.strip()]


def _check_key(key: str) -> None:
    if not _KEY_RE.match(key):
        raise bad_request(
            f"unable to parse requirement: {key!r}: name part must consist of alphanumeric characters, '-', '_' or '.'"
        )


def _check_value(v: str) -> None:
    if len(v) > 63 or not _VALUE_RE.match(v):
        raise bad_request(
            f"unable to parse requirement: values[0]: Invalid value: {v!r}: a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.'"
        )


def parse_label_selector(expr: str) -> list[Requirement]:
    reqs: list[Requirement] = []
    for part in _split_top(expr):
        m = re.match(r"^(\S+?)\s+(notin|in)\s*\((.*)\)$", part)
        if m:
            key, op, vals = m.group(1), m.group(2), m.group(3)
            values = tuple(v.strip() for v in vals.split(",") if v.strip() != "" or vals.strip() == "")
            _check_key(key)
            for v in values:
                _check_value(v)
            reqs.append(Requirement(key, op, values))
            continue
        m = re.match(r"^([^=!<>\s]+)\s*(==|=|!=)\s*(.*)$", part)
        if m:
            key, op, value = m.group(1), m.group(2), m.group(3).strip()
            _check_key(key)
            _check_value(value)
            reqs.append(Requirement(key, "!=" if op == "!=" else "=", (value,)))
            continue
        if part.startswith("!"):
            key = part[1:].strip()
            _check_key(key)
            reqs.append(Requirement(key, "!"))
            continue
        if re.search(r"[<>]", part):
            # gt/lt exist in the parser but only for numeric values; kubesim refuses them outright.
            raise bad_request(f"unable to parse requirement: {part!r}: operator not supported by kubesim")
        _check_key(part)
        reqs.append(Requirement(part, "exists"))
    return reqs


def labels_match(reqs: list[Requirement], labels: Mapping[str, str] | None) -> bool:
    labels = labels or {}
    return all(r.matches(labels) for r in reqs)


def selector_from_label_selector(sel: Mapping[str, Any] | None) -> list[Requirement] | None:
    """``metav1.LabelSelectorAsSelector``; None means the selector matches nothing (a nil selector)."""
    if sel is None:
        return None
    reqs: list[Requirement] = []
    for k, v in (sel.get("matchLabels") or {}).items():
        reqs.append(Requirement(k, "=", (str(v),)))
    for e in sel.get("matchExpressions") or []:
        op = e.get("operator")
        values = tuple(e.get("values") or ())
        if op == "In":
            reqs.append(Requirement(e["key"], "in", values))
        elif op == "NotIn":
            reqs.append(Requirement(e["key"], "notin", values))
        elif op == "Exists":
            reqs.append(Requirement(e["key"], "exists"))
        elif op == "DoesNotExist":
            reqs.append(Requirement(e["key"], "!"))
        else:
            raise StatusError(422, "Invalid", f"{op!r} is not a valid label selector operator")
    return reqs


@dataclass(frozen=True)
class FieldRequirement:
    field: str
    op: str  # "=" or "!="
    value: str


def parse_field_selector(expr: str) -> list[FieldRequirement]:
    reqs: list[FieldRequirement] = []
    for part in _split_top(expr):
        m = re.match(r"^([^=!]+?)\s*(==|=|!=)\s*(.*)$", part)
        if not m:
            raise bad_request(f"invalid selector: '{expr}'; can't understand '{part}'")
        op = "!=" if m.group(2) == "!=" else "="
        reqs.append(FieldRequirement(m.group(1).strip(), op, m.group(3).strip()))
    return reqs


FieldGetter = Callable[[dict[str, Any]], dict[str, str]]


def check_field_selector(reqs: list[FieldRequirement], supported: set[str], kind: str, version: str) -> None:
    """Unsupported fields are a 400, as the conversion func of each type answers."""
    for r in reqs:
        if r.field not in supported:
            raise bad_request(f"field label not supported: {r.field}")


def fields_match(reqs: list[FieldRequirement], fields: Mapping[str, str]) -> bool:
    for r in reqs:
        v = fields.get(r.field, "")
        if (r.op == "=" and v != r.value) or (r.op == "!=" and v == r.value):
            return False
    return True
