"""docs/troubleshooting.md explains every reason the operator can report, and links into it resolve.

A reason's section is found by its anchor (``<a id="Reason"></a>``) or its heading
(``### Reason``): the status, the Events and the operator's messages send people there.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from clusterresync.conditions import Reason

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
TROUBLESHOOTING = DOCS / "troubleshooting.md"

_ANCHOR = re.compile(r"<a\s+(?:id|name)=\"([^\"]+)\"\s*>")
_HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$", re.MULTILINE)


def _text() -> str:
    return TROUBLESHOOTING.read_text(encoding="utf-8")


def _without_code(text: str) -> str:
    """The Markdown without fenced code blocks (a ``# comment`` in a shell block is no heading)."""
    return re.sub(r"^```.*?^```", "", text, flags=re.MULTILINE | re.DOTALL)


def _slug(heading: str) -> str:
    """The anchor GitHub derives from a heading: lower case, punctuation dropped, spaces to hyphens."""
    plain = re.sub(r"[`*_]", "", heading).strip().lower()
    return re.sub(r"[^\w\- ]", "", plain).replace(" ", "-")


def _targets(text: str) -> set[str]:
    """Every fragment a link into this document can use: explicit anchors and heading slugs."""
    text = _without_code(text)
    return set(_ANCHOR.findall(text)) | {_slug(h) for h in _HEADING.findall(text)}


@pytest.mark.parametrize("reason", list(Reason), ids=lambda r: r.value)
def test_every_reason_has_a_section(reason: Reason) -> None:
    text = _without_code(_text())
    anchors = set(_ANCHOR.findall(text))
    headings = {h.strip() for h in re.findall(r"^###\s+(.+?)\s*$", text, re.MULTILINE)}
    assert reason.value in anchors or reason.value in headings, (
        f'docs/troubleshooting.md has no section for reason {reason.value}: add <a id="{reason.value}"></a> '
        f"and a ### {reason.value} heading with Means / Touched / Check / Fix"
    )


def test_anchors_are_unique() -> None:
    anchors = _ANCHOR.findall(_without_code(_text()))
    assert sorted(a for a in set(anchors) if anchors.count(a) > 1) == []


def test_links_within_troubleshooting_resolve() -> None:
    text = _text()
    targets = _targets(text)
    broken = sorted({f for f in re.findall(r"\]\(#([^)\s]+)\)", _without_code(text)) if f not in targets})
    assert broken == [], f"links to missing anchors in docs/troubleshooting.md: {broken}"


def test_links_into_troubleshooting_from_docs_and_code_resolve() -> None:
    targets = _targets(_text())
    sources = [*DOCS.glob("*.md"), *(ROOT / "operator" / "clusterresync").rglob("*.py")]
    broken = sorted(
        {
            f"{src.relative_to(ROOT)}: #{fragment}"
            for src in sources
            for fragment in re.findall(r"troubleshooting\.md#([\w-]+)", src.read_text(encoding="utf-8"))
            if fragment not in targets
        }
    )
    assert broken == [], f"links to missing anchors of docs/troubleshooting.md: {broken}"


def test_every_policy_reason_and_event_is_explained_in_the_policy_guide() -> None:
    from clusterresync.conditions import PolicyCondition, PolicyEventReason, PolicyReason

    text = (DOCS / "policies.md").read_text(encoding="utf-8")
    missing = [str(r) for r in [*PolicyReason, *PolicyCondition, *PolicyEventReason] if f"`{r}`" not in text]
    assert not missing, f"docs/policies.md does not name: {missing}"


def _markdown_files() -> list[Path]:
    return sorted(
        [
            ROOT / "README.md",
            *DOCS.rglob("*.md"),
            *(ROOT / "manifests").rglob("*.md"),
            *(ROOT / "bench").glob("*.md"),
        ]
    )


def test_every_relative_link_in_the_docs_resolves() -> None:
    """Every relative link of README.md, docs/ (with docs/engines/), manifests/ and bench/ names a
    file or directory of the repository, and its #fragment, into a Markdown file, an anchor of it."""
    broken = []
    for src in _markdown_files():
        text = _without_code(src.read_text(encoding="utf-8"))
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"[a-z]+:", target):
                continue  # https:, mailto:
            path, _, fragment = target.partition("#")
            dest = (src.parent / path).resolve() if path else src
            if not dest.exists():
                broken.append(f"{src.relative_to(ROOT)}: {target} (no such file)")
            elif (
                fragment
                and dest.suffix == ".md"
                and fragment not in _targets(dest.read_text(encoding="utf-8"))
            ):
                broken.append(f"{src.relative_to(ROOT)}: {target} (no such anchor)")
    assert broken == [], "\n".join(broken)
