"""docs/security.md's table of rules is exactly what the installs grant: both installs are rendered
with the real ``kubectl kustomize`` (as tests/unit/test_manifests.py does), every rule they grant
to the operator's ServiceAccount is a row (scope, API group, resource, verbs, resourceNames) and
every row is a rule they grant; each row says why, what a leaked token could do, and what limits
it. The opt-in table is the allow-list's opt-in (Secrets), which the installs do not grant."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from .test_manifests import CLUSTER_SCOPED, INSTALLS, OPERATOR_NS, OPT_IN, WILDCARD, grants

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "security.md"

Row = tuple[str, str, str, frozenset[str], tuple[str, ...]]  # scope, group, resource, verbs, names
NAMESPACES, CLUSTER = "namespaces", "cluster"


def section(title: str) -> str:
    text = DOC.read_text()
    start = text.index(f"\n## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else len(text)]


def table(title: str) -> list[list[str]]:
    """The rows of the first table of a section, as cells (the header and its rule dropped)."""
    rows = [
        [c.strip() for c in line.strip().strip("|").split("|")]
        for line in section(title).splitlines()
        if line.startswith("|")
    ]
    assert len(rows) > 2, f"no table in {title}"
    return rows[2:]


def plain(cell: str) -> str:
    return cell.replace("`", "").replace("*", "").strip()


def group(cell: str) -> str:
    g = plain(cell)
    return "" if g == "core" else g


def names(cell: str) -> tuple[str, ...]:
    return () if plain(cell) in ("—", "") else tuple(sorted(re.findall(r"`([^`]+)`", cell)))


def documented() -> set[Row]:
    out: set[Row] = set()
    for cells in table("The rules"):
        assert len(cells) == 8, cells
        scope, grp, resource, verbs, rnames, why, leaked, limits = cells
        for text, what in ((why, "why"), (leaked, "if the token leaked"), (limits, "what limits it")):
            assert plain(text) not in ("", "—"), f"{resource}: the {what!r} cell is empty"
        verb_set = frozenset(plain(v) for v in verbs.split(","))
        row = (plain(scope), group(grp), plain(resource), verb_set, names(rnames))
        assert row not in out, f"a row twice: {row}"
        out.add(row)
    return out


def granted(install: str) -> set[Row]:
    """The install's grants as the doc's rows: one per scope, group, resource and resourceNames,
    with its verbs; the scope named as the doc names it."""
    served: set[str] = set()
    rows: dict[tuple[str, str, str, tuple[str, ...]], set[str]] = {}
    for scope, g, r, v, rnames in grants(install):
        if r == "leases":
            assert scope == OPERATOR_NS
            where = OPERATOR_NS
        elif r.split("/")[0] in CLUSTER_SCOPED:
            assert scope == WILDCARD
            where = CLUSTER
        else:
            if scope != WILDCARD:
                served.add(scope)
            where = NAMESPACES
        rows.setdefault((where, g, r, tuple(sorted(rnames))), set()).add(v)
    if install == "manifests":
        assert not served, "the cluster-wide install grants the namespaced rules cluster-wide"
    return {(w, g, r, frozenset(v), n) for (w, g, r, n), v in rows.items()}


@pytest.mark.kubectl
@pytest.mark.parametrize("install", INSTALLS)
def test_the_table_is_exactly_the_rules_of_the_install(install: str) -> None:
    doc, rules = documented(), granted(install)
    missing = sorted(rules - doc, key=str)
    extra = sorted(doc - rules, key=str)
    assert not missing, f"granted by {install} but not in docs/security.md: {missing}"
    assert not extra, f"in docs/security.md but not granted by {install}: {extra}"


def test_the_opt_in_table_is_the_allow_lists_opt_in() -> None:
    rows = table("Opt-in: Secrets")
    found = set()
    for cells in rows:
        assert len(cells) == 6, cells
        _scope, grp, resource, verbs, _names, used_by = cells
        for v in verbs.split(","):
            found.add((group(grp), plain(resource), plain(v)))
        assert "passwordSecretRef" in used_by and "urlSecretRef" in used_by
    assert found == set(OPT_IN)
    # ... and never a rule of the installs (test_manifests checks the manifests; here the doc).
    assert not {(g, r) for (_s, g, r, _v, _n) in documented()} & {(g, r) for (g, r, _v) in OPT_IN}
