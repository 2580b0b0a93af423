"""docs/reference/ is exactly what the CRDs generate (`make docs`), and it documents every field,
rule and printer column of them, with anchors that links can use."""

from __future__ import annotations

import difflib
import html
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from clusterresync import crdgen, docgen

ROOT = Path(__file__).resolve().parents[2]
REFERENCE = ROOT / "docs" / "reference"

_ANCHOR = re.compile(r'<a id="([^"]+)"></a>')


def test_committed_reference_matches_the_models() -> None:
    for path, content in docgen.outputs(REFERENCE).items():
        rel = path.relative_to(ROOT)
        assert path.exists(), f"{rel} is missing: run `make docs` (or `make manifests`) and commit"
        committed = path.read_text(encoding="utf-8")
        if committed != content:
            diff = "".join(
                list(
                    difflib.unified_diff(
                        committed.splitlines(keepends=True),
                        content.splitlines(keepends=True),
                        f"{rel} (committed)",
                        f"{rel} (from the models)",
                        n=0,
                    )
                )[:40]
            )
            pytest.fail(f"{rel} differs from the models: run `make docs` and commit\n{diff}")


def test_no_stray_pages() -> None:
    expected = {p.name for p in docgen.outputs(REFERENCE)}
    assert {p.name for p in REFERENCE.glob("*.md")} == expected


def test_rendering_is_reproducible() -> None:
    for d in crdgen.CRDS:
        assert docgen.render(d) == docgen.render(d)


def _fields(node: dict[str, Any], path: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every property of the schema below ``node``, by its anchor path (items and values add nothing)."""
    for name, prop in (node.get("properties") or {}).items():
        child = f"{path}.{name}"
        yield child, prop
        inner = prop
        while True:
            if inner.get("type") == "array":
                inner = inner["items"]
            elif isinstance(inner.get("additionalProperties"), dict):
                inner = inner["additionalProperties"]
            else:
                break
        yield from _fields(inner, child)


def _schema(d: crdgen.CrdDef) -> dict[str, Any]:
    schema: dict[str, Any] = crdgen.crd(d)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return schema


@pytest.mark.parametrize("d", crdgen.CRDS, ids=lambda d: d.kind)
def test_every_field_rule_and_column_is_documented(d: crdgen.CrdDef) -> None:
    page = docgen.render(d)
    anchors = _ANCHOR.findall(page)
    assert sorted(a for a in set(anchors) if anchors.count(a) > 1) == [], "duplicate anchors"
    schema = _schema(d)
    paths = ["spec", "status"]
    for top in ("spec", "status"):
        paths += [p for p, _ in _fields(schema["properties"][top], top)]
    missing = [p for p in paths if p not in anchors]
    assert missing == [], f"fields without an anchor in the {d.kind} reference: {missing}"
    # every internal link lands on an anchor of the page (or a heading: the contents' sections)
    links = set(re.findall(r"\]\(#([^)]+)\)", page))
    assert sorted(links - set(anchors) - {"printer-columns", "validation-rules"}) == []

    def rules(node: dict[str, Any]) -> Iterator[dict[str, Any]]:
        yield from node.get("x-kubernetes-validations") or []
        for child in (node.get("properties") or {}).values():
            yield from rules(child)
        for key in ("items", "additionalProperties"):
            if isinstance(node.get(key), dict):
                yield from rules(node[key])

    for rule in rules(schema):
        assert rule["message"] in page, rule["message"]
        assert rule["rule"] in page, rule["rule"]
    for column in d.printer_columns:
        assert f"| {column['name']} | {column['type']} | `{column['jsonPath']}` |" in page


def _row(page: str, anchor: str) -> list[str]:
    line = next(x for x in page.splitlines() if f'<a id="{anchor}"></a>' in x and x.startswith("|"))
    return [c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]]


def _section(page: str, anchor: str) -> str:
    start = page.index(f'<a id="{anchor}"></a>\n')
    nxt = page.find('\n<a id="', start + 1)
    return page[start : nxt if nxt != -1 else len(page)]


def test_rows_say_type_required_default_and_constraints() -> None:
    page = docgen.render(crdgen.CLUSTER_RESYNC)
    assert _row(page, "spec.maxParallel")[1:5] == ["integer", "no", "`1`", "1 to 100"]
    assert _row(page, "spec.method")[1:5] == ["string", "no", '`"Snapshot"`', "one of `Snapshot`, `Clone`"]
    volumes = _row(page, "spec.volumes")
    assert volumes[1:3] == ["list of string", "**yes**"]
    assert volumes[4] == "1 to 16 items; each item once (list type `set`); each item: at most 63 characters"
    assert _row(page, "spec.target.name")[1:3] == ["string", "**yes**"]
    assert _row(page, "spec.primary.selector.matchLabels")[1] == "map of string to string"
    reason = _row(page, "status.conditions.reason")
    # as HTML (a "](" in a code span looks like a link to naive checkers); it reads the same
    assert reason[4] == (
        "1 to 1024 characters; matches <code>^[A-Za-z]&#40;[A-Za-z0-9_,:]*[A-Za-z0-9_])?$</code>"
    )
    assert html.unescape(reason[4]) == (
        "1 to 1024 characters; matches <code>^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$</code>"
    )
    assert _row(page, "status.conditions.lastTransitionTime")[1] == "string (date-time)"
    # a nested object is a link to its own section; a list of objects too, with its list type
    spec = _section(page, "spec")
    assert "| `timeouts` | [object](#spec.timeouts) | no | `{}` |" in spec
    status = _section(page, "status")
    assert (
        "| `conditions` | list of [object](#status.conditions) | no |  | at most 8 items; "
        "one item per `type` (list type `map`) |"
    ) in status
    # the rules sit in the section of the object they are checked on, with their CEL
    primary = _section(page, "spec.primary")
    assert "- exactly one of podName and selector must be set" in primary
    assert "has(self.podName) != has(self.selector)" in primary
    assert "exactly one of podName and selector" not in _section(page, "spec.target")


def test_policy_reference_nests_the_resync_template() -> None:
    page = docgen.render(crdgen.RESYNC_POLICY)
    assert "#### `spec.resyncTemplate.hooks`" in page
    assert _row(page, "spec.mode")[4].startswith("one of `Off`, `Manual`, `Auto`")
    assert "`kubectl get resyncpolicies`" in page


# -- shapes the two CRDs do not have (yet): rendered all the same ---------------------------------
SHAPES: dict[str, Any] = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "shapes.example.io"},
    "spec": {
        "group": "example.io",
        "scope": "Cluster",
        "names": {"kind": "Shape", "plural": "shapes", "singular": "shape"},
        "versions": [
            {
                "name": "v1",
                "served": True,
                "storage": True,
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "description": "Every shape.",
                        "properties": {
                            "spec": {
                                "type": "object",
                                "required": ["port"],
                                "properties": {
                                    "port": {
                                        "x-kubernetes-int-or-string": True,
                                        "description": "80 | http, a <port> or *its* name",
                                        "pattern": "^([0-9]+|[a-z]+)$",
                                    },
                                    "byName": {
                                        "type": "object",
                                        "maxProperties": 4,
                                        "additionalProperties": {
                                            "type": "object",
                                            "properties": {"size": {"type": "integer", "minimum": 1}},
                                            "x-kubernetes-validations": [
                                                {"rule": "has(self.size)", "message": "a size"}
                                            ],
                                        },
                                    },
                                    "matrix": {
                                        "type": "array",
                                        "x-kubernetes-validations": [
                                            {"rule": "size(self) % 2 == 0", "message": "an even count"}
                                        ],
                                        "items": {"type": "array", "items": {"type": "number"}},
                                    },
                                    "grid": {
                                        "type": "array",
                                        "x-kubernetes-validations": [
                                            {"rule": "size(self) > 0", "message": "a row at least"}
                                        ],
                                        "items": {
                                            "type": "array",
                                            "items": {
                                                "type": "object",
                                                "properties": {"x": {"type": "string", "maxLength": 3}},
                                            },
                                        },
                                    },
                                    "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
                                    "tags": {
                                        "type": "array",
                                        "items": {
                                            "type": "string",
                                            "x-kubernetes-validations": [
                                                {
                                                    "rule": "self != '' &&\n  size(self) < 10",
                                                    "message": "no empty tag",
                                                }
                                            ],
                                        },
                                    },
                                },
                            }
                        },
                    }
                },
            }
        ],
    },
}


def test_other_shapes_int_or_string_maps_of_objects_lists_of_lists() -> None:
    page = docgen.render_crd(SHAPES)
    assert _row(page, "spec.port")[1:3] == ["integer or string", "**yes**"]
    assert (
        "| `byName` | map of string to [object](#spec.byName) | no |  | at most 4 entries; "
        "CEL rules on each value: in [its section](#spec.byName) |"
    ) in page
    by_name = _section(page, "spec.byName")
    assert "- a size\n" in by_name and "has(self.size)" in by_name
    assert "### `spec.byName{*}`" in page and _row(page, "spec.byName.size")[1:5] == [
        "integer",
        "no",
        "",
        "≥ 1",
    ]
    assert _row(page, "spec.matrix")[1] == "list of list of number"
    assert "### `spec.grid[*][*]`" in page and _row(page, "spec.grid.x")[4] == "at most 3 characters"
    assert _row(page, "spec.free")[1] == "object (any fields)"
    spec = _section(page, "spec")
    assert "- an even count (on `spec.matrix`)" in spec and "size(self) % 2 == 0" in spec
    assert "- no empty tag (on `spec.tags[*]`)" in spec
    assert "  ```cel\n  self != '' &&\n    size(self) < 10\n  ```\n" in spec  # a rule of several lines
    # a rule on a list of objects is the parent's, not the items' section's
    assert "- a row at least (on `spec.grid`)" in spec
    assert "| `grid` | list of list of [object](#spec.grid) | no |  | CEL rules: below |" in spec
    assert "`kind: Shape`, cluster." in page


@pytest.mark.parametrize(
    "crd", [*(crdgen.crd(d) for d in crdgen.CRDS), SHAPES], ids=[*(d.kind for d in crdgen.CRDS), "Shape"]
)
def test_pages_render_as_tables_of_whole_rows(crd: dict[str, Any]) -> None:
    """Rendered as CommonMark with GFM tables (markdown-it-py, which rich brings): no escaped pipe
    or pattern splits a row, and the patterns read as written."""
    from markdown_it import MarkdownIt

    md = MarkdownIt("commonmark").enable("table")
    page = docgen.render_crd(crd)
    tokens = md.parse(page)
    tables = 0
    widths: list[int] = []
    row: int | None = None
    for t in tokens:
        if t.type == "table_open":
            tables, widths = tables + 1, []
        elif t.type == "tr_open":
            row = 0
        elif t.type in ("th_open", "td_open") and row is not None:
            row += 1
        elif t.type == "tr_close" and row is not None:
            widths.append(row)
        elif t.type == "table_close":
            assert len(set(widths)) == 1, f"a row of table {tables} has another width: {widths}"
    assert tables >= 3
    html_out = md.render(page)
    # each field's row carries its whole description in the last cell: no pipe cut it short
    cells = {
        html.unescape(re.sub(r"<[^>]+>", "", c)) for c in re.findall(r"<td>(.*?)</td>", html_out, re.DOTALL)
    }
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    for top in ("spec", "status"):
        for path, node in _fields(schema["properties"].get(top, {}), top):
            text = " ".join(str(node.get("description") or "").split())
            assert not text or text in cells, (path, text)
    pattern = {"ClusterResync": "^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$", "Shape": "^([0-9]+|[a-z]+)$"}
    kind = crd["spec"]["names"]["kind"]
    if kind in pattern:
        assert f"matches <code>{pattern[kind]}</code>" in html.unescape(html_out)
