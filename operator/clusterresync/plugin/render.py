"""Printing blocks: plain kubectl-style text (stdout not a terminal: no colour codes), rich tables
on a terminal, or the objects as JSON or YAML (``-o``)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import IO, Any

import yaml

from .views import NONE, Block, Fields, Lines, Table

GOOD = {"Completed", "True", "InSync", "Bound", "yes"}
BAD = {"Failed", "Diverged", "RollingBack", "Unknown"}
WARN = {"Lagging", "Skipped", "Released", "Suspended"}


def plain_table(table: Table) -> list[str]:
    if not table.rows:
        return [table.empty] if table.empty else []
    widths = [len(c) for c in table.columns]
    for row in table.rows:
        for i, v in enumerate(row):
            widths[i] = max(widths[i], len(v))
    out = []
    for row in [table.columns, *table.rows]:
        out.append("   ".join(v.ljust(widths[i]) for i, v in enumerate(row)).rstrip())
    return out


def plain(blocks: Sequence[Block]) -> str:
    parts: list[str] = []
    for b in blocks:
        lines: list[str] = []
        if b.title:
            lines.append(f"{b.title}:")
        if isinstance(b, Fields):
            width = max((len(k) for k, _ in b.items), default=0) + 1
            lines += [f"{(k + ':').ljust(width)}  {v}" for k, v in b.items]
        elif isinstance(b, Table):
            lines += plain_table(b)
        else:
            lines += b.lines
        parts.append("\n".join(lines))
    return "\n\n".join(parts) + "\n"


def _style(value: str) -> str:
    if value in GOOD:
        return "green"
    if value in BAD:
        return "bold red"
    if value in WARN:
        return "yellow"
    return ""


def rich_renderables(blocks: Sequence[Block]) -> list[Any]:
    from rich.table import Table as RichTable
    from rich.text import Text

    out: list[Any] = []
    for b in blocks:
        if isinstance(b, Fields):
            grid = RichTable.grid(padding=(0, 2))
            grid.add_column(style="bold")
            grid.add_column()
            for k, v in b.items:
                grid.add_row(k, Text(v, style=_style(v)))
            if b.title:
                out.append(Text(b.title, style="bold underline"))
            out.append(grid)
        elif isinstance(b, Table):
            if not b.rows:
                if b.title:
                    out.append(Text(b.title, style="bold underline"))
                out.append(Text(b.empty, style="dim"))
            else:
                t = RichTable(
                    title=b.title or None,
                    title_justify="left",
                    title_style="bold underline",
                    header_style="bold",
                )
                for c in b.columns:
                    t.add_column(c, overflow="fold")
                for row in b.rows:
                    t.add_row(*(Text(v, style=_style(v) if v != NONE else "dim") for v in row))
                out.append(t)
        elif isinstance(b, Lines):
            if b.title:
                out.append(Text(b.title, style="bold underline"))
            for line in b.lines:
                out.append(Text(line, style="dim" if line.startswith("#") else ""))
        out.append(Text(""))
    return out[:-1] if out else out


def emit(blocks: Sequence[Block], stream: IO[str], tty: bool) -> None:
    if not tty:
        stream.write(plain(blocks))
        stream.flush()
        return
    from rich.console import Console

    console = Console(file=stream)
    for r in rich_renderables(blocks):
        console.print(r)


def machine(data: Any, fmt: str) -> str:
    if fmt == "json":
        return json.dumps(data, indent=2, sort_keys=False) + "\n"
    return str(yaml.safe_dump(data, sort_keys=False, default_flow_style=False))
