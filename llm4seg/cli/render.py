"""Rendering helpers shared by commands: JSON on stdout, tables and progress on stderr."""

from __future__ import annotations

import json
import sys
from typing import Any

from rich.console import Console

# soft_wrap: a long line (a path, a command) is never broken at the console width, so piped and
# logged output can be copied and grepped whole; tables still fit the width (print_table).
# markup=False: messages are printed as written. Rich's markup ate every bracketed word of our
# messages (`pip install 'llm4seg[video]'` printed as `pip install 'llm4seg'`); style is given by
# `style=`, never by tags inside a message.
stdout = Console(soft_wrap=True, markup=False)
stderr = Console(stderr=True, soft_wrap=True, markup=False)


def print_json(data: Any) -> None:
    """Write `data` as indented JSON to stdout (the `--json` output; non-JSON values as strings)."""
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


def human(n: float) -> str:
    """A count with a G/M/k suffix (1.23 M), for tables."""
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.2f} {unit}"
    return f"{n:.0f}"


def print_table(title: str, headers: list[str], rows: list[list[str]], console: Console | None = None) -> None:
    """A table when it fits the console's width; otherwise one block per row ('header: value'
    lines). Names and numbers are never cut or ellipsized, in terminals or pipes."""
    console = console or stdout
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    if sum(widths) + 3 * len(widths) + 1 <= console.width:
        from rich.table import Table

        table = Table(title=title, title_justify="left")
        for i, h in enumerate(headers):
            table.add_column(h, justify="left" if i == 0 else "right", no_wrap=True, min_width=widths[i])
        for r in rows:
            table.add_row(*r)
        console.print(table, soft_wrap=True)
        return
    console.print(title, soft_wrap=True, markup=False, highlight=False)
    for r in rows:
        console.print(f"- {headers[0]}: {r[0]}", soft_wrap=True, markup=False, highlight=False)
        for h, v in zip(headers[1:], r[1:]):
            console.print(f"    {h}: {v}", soft_wrap=True, markup=False, highlight=False)
