"""Tables for people: an id is never cut short (one ending in an ellipsis cannot be copied).

Plain columns (no borders: two spaces between columns) are kept whole. A
column named in ``wrap`` (free text) wraps to fit the terminal; a column in
``optional`` is left out when the table would not fit otherwise (``--json``
and ``show`` have everything). On a terminal too narrow even then, the
lines are longer than the terminal and it wraps them: nothing is lost.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from rich.console import Console
from rich.measure import Measurement
from rich.table import Table

GAP = 2  # between columns


def print_rows(
    console: Console,
    headers: Sequence[str],
    rows: Sequence[Sequence[str]],
    *,
    wrap: Sequence[str] = (),
    optional: Sequence[str] = (),
) -> None:
    widths = {h: max([len(h), *(len(row[i]) for row in rows)]) for i, h in enumerate(headers)}
    shown = list(headers)
    for name in reversed(optional):
        if _natural(shown, widths) <= console.width:
            break
        shown.remove(name)
    table = Table(box=None, pad_edge=False, padding=(0, GAP // 2), header_style="bold")
    for name in shown:
        if name in wrap:
            table.add_column(name, overflow="fold")
        else:
            table.add_column(name, no_wrap=True, min_width=widths[name])
    for row in rows:
        table.add_row(*(row[headers.index(name)] for name in shown))
    minimum = Measurement.get(console, console.options.update_width(10_000), table).minimum
    console.print(table, width=max(console.width, minimum))


def _natural(shown: list[str], widths: dict[str, int]) -> int:
    return sum(widths[name] for name in shown) + GAP * (len(shown) - 1)


def when(value: str | None) -> str:
    """An ISO timestamp of the JSON shapes as people read it: 2026-11-27 23:51:08 (UTC)."""
    if not value:
        return "-"
    return datetime.fromisoformat(value).strftime("%Y-%m-%d %H:%M:%S")
