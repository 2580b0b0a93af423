"""A subset of Kubernetes JSONPath (``staging/src/k8s.io/client-go/util/jsonpath``).

Enough for ``additionalPrinterColumns`` (``.spec.x``, ``.status.conditions[?(@.type=="Ready")].status``,
``.items[0]``, ``[*]``) and scale subresource paths. The apiextensions server evaluates printer
columns with this library in ``apiextensions-apiserver/pkg/registry/customresource/tableconvertor``.
"""

from __future__ import annotations

import re
from typing import Any

_TOKEN = re.compile(
    r"""\.([A-Za-z0-9_\-/]+)|\[(\*|-?\d+)\]|\[\?\(@\.([A-Za-z0-9_.\-]+)\s*(==|!=)\s*(?:"([^"]*)"|'([^']*)'|(-?\d+))\)\]|\['([^']+)'\]"""
)


class JSONPathError(ValueError):
    pass


def parse(path: str) -> list[tuple[str, Any]]:
    p = path.strip()
    if p.startswith("{") and p.endswith("}"):
        p = p[1:-1]
    if p.startswith("$"):
        p = p[1:]
    if p and not p.startswith((".", "[")):
        p = "." + p
    steps: list[tuple[str, Any]] = []
    pos = 0
    while pos < len(p):
        m = _TOKEN.match(p, pos)
        if not m:
            raise JSONPathError(f"unrecognized character in action: {p[pos:]!r}")
        if m.group(1) is not None:
            steps.append(("field", m.group(1)))
        elif m.group(2) is not None:
            steps.append(("index", m.group(2)))
        elif m.group(3) is not None:
            value: Any = (
                m.group(5)
                if m.group(5) is not None
                else m.group(6)
                if m.group(6) is not None
                else int(m.group(7))
            )
            steps.append(("filter", (m.group(3), m.group(4), value)))
        else:
            steps.append(("field", m.group(8)))
        pos = m.end()
    return steps


def find(obj: Any, path: str) -> list[Any]:
    """All values the path selects (an empty list when none)."""
    current = [obj]
    for kind, arg in parse(path):
        nxt: list[Any] = []
        for v in current:
            if kind == "field":
                if isinstance(v, dict) and arg in v:
                    nxt.append(v[arg])
            elif kind == "index":
                if isinstance(v, list):
                    if arg == "*":
                        nxt.extend(v)
                    else:
                        i = int(arg)
                        if -len(v) <= i < len(v):
                            nxt.append(v[i])
                elif isinstance(v, dict) and arg == "*":
                    nxt.extend(v.values())
            else:
                key, op, want = arg
                items = v if isinstance(v, list) else []
                for it in items:
                    got = simple_get(it, "." + key)
                    if got is None:
                        continue
                    eq = str(got) == str(want)
                    if (op == "==" and eq) or (op == "!=" and not eq):
                        nxt.append(it)
        current = nxt
    return current


def simple_get(obj: Any, path: str) -> Any:
    vals = find(obj, path) if path else [obj]
    return vals[0] if vals else None


def simple_set(obj: dict[str, Any], path: str, value: Any) -> None:
    steps = parse(path)
    cur: Any = obj
    for kind, arg in steps[:-1]:
        if kind != "field":
            raise JSONPathError("only field paths can be set")
        cur = cur.setdefault(arg, {})
    kind, arg = steps[-1]
    if kind != "field":
        raise JSONPathError("only field paths can be set")
    cur[arg] = value
