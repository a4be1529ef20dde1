"""Readable terminal tables for fleetctl (the --json output is the API's dicts as they are)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

_COLOURS = {
    "optimal": "\033[32m",
    "degraded": "\033[33m",
    "critical": "\033[31m",
    "meter_error": "\033[35m",
    "insufficient_data": "\033[90m",
}
_RESET = "\033[0m"


def status(text: str, colour: bool) -> str:
    """A status word, coloured by severity on a terminal."""
    return f"{_COLOURS.get(text, '')}{text}{_RESET}" if colour and text in _COLOURS else text


def num(value: Any, digits: int = 3) -> str:
    """A number for a table cell; '-' for no value."""
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return str(value)


def table(headers: Sequence[str], rows: Sequence[Sequence[str]], right: set[int]) -> str:
    """Columns padded to their widest cell; `right` holds the indexes of numeric columns."""
    widths = [len(h) for h in headers]
    for row in rows:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], _visible_len(cell))
    lines = [_line(headers, widths, right), "  ".join("-" * w for w in widths)]
    lines += [_line(row, widths, right) for row in rows]
    return "\n".join(lines)


def _visible_len(cell: str) -> int:
    # ANSI colour codes take no room on screen.
    if "\033[" not in cell:
        return len(cell)
    out, skip = 0, False
    for ch in cell:
        if ch == "\033":
            skip = True
        elif skip and ch == "m":
            skip = False
        elif not skip:
            out += 1
    return out


def _line(cells: Sequence[str], widths: list[int], right: set[int]) -> str:
    parts = []
    for i, cell in enumerate(cells):
        pad = " " * (widths[i] - _visible_len(cell))
        parts.append(pad + cell if i in right else cell + pad)
    return "  ".join(parts).rstrip()


def percent(value: float | None) -> str:
    """A percentage cell."""
    return "-" if value is None else f"{value:.1f} %"


@dataclass(frozen=True)
class Column:
    """One column of a table: its header, its cell of a row, numbers to the right, and whether
    only `-o wide` shows it (the default table fits 80 columns)."""

    header: str
    cell: Callable[[Any], str]
    right: bool = False
    wide: bool = False


def columns(rows: Sequence[Any], cols: Sequence[Column], *, wide: bool) -> str:
    """The table of `rows` in the columns shown at this width."""
    shown = [c for c in cols if wide or not c.wide]
    cells = [[c.cell(r) for c in shown] for r in rows]
    return table([c.header for c in shown], cells, {i for i, c in enumerate(shown) if c.right})


def clip(text: str, width: int, wide: bool) -> str:
    """`text` cut to `width` characters (with an ellipsis) unless wide."""
    return text if wide or len(text) <= width else text[: width - 1] + "…"
