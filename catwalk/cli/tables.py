"""Every table the CLI prints, readable at 80 columns and at 300.

Cells are data, never markup (``[model_moderated]`` is shown as typed). Columns have a kind:
``key`` (ids, paths, URLs: never broken inside, since people copy them), ``short`` (status,
numbers, dates: never broken either) and ``text`` (names, errors, messages: wrapped between
words). When the terminal is wide enough for every key and short column whole, and for the
text at a sane number of lines, it is a table, one row per record. Otherwise each record is
a block: its key and short cells on one line, then one indented ``label: value`` line per
other column, text wrapped between words and a path on a line of its own; a line holding
one path longer than the terminal is left for the terminal to fold, never cut by Rich. The
full values are always in ``--json``.
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

Kind = Literal["key", "short", "text"]

#: The narrowest a wrapped text column may get before a block reads better than a table.
TEXT_MIN_WIDTH = 24
#: The most lines a text cell may take in a table before a block reads better.
TEXT_MAX_LINES = 4
_INDENT = "  "


@dataclass(frozen=True, slots=True)
class Column:
    header: str
    kind: Kind = "short"
    justify: Literal["left", "right"] = "left"
    #: Whether the block layout puts this cell on the record's first line (else its own).
    headline: bool | None = None

    @property
    def in_headline(self) -> bool:
        return self.headline if self.headline is not None else self.kind == "short"


def _table_fits(columns: Sequence[Column], rows: Sequence[Sequence[str]], width: int) -> bool:
    natural = [max([len(c.header), *(len(r[i]) for r in rows)]) for i, c in enumerate(columns)]
    # Each column costs its padding (2) and a rule (1); the table its outer rule (1).
    chrome = 3 * len(columns) + 1
    fixed = sum(n for n, c in zip(natural, columns, strict=True) if c.kind != "text")
    texts = [i for i, c in enumerate(columns) if c.kind == "text"]
    room = width - chrome - fixed
    if not texts:
        return room >= 0
    wanted = sum(min(natural[i], TEXT_MIN_WIDTH) for i in texts)
    if room < wanted:
        return False
    # Share the room in proportion to each text column's need, as Rich does, and check no
    # cell would stand taller than TEXT_MAX_LINES.
    need = sum(natural[i] for i in texts) or 1
    for i in texts:
        share = max(min(natural[i], TEXT_MIN_WIDTH), room * natural[i] // need)
        longest = max((len(r[i]) for r in rows), default=0)
        if -(-longest // max(share, 1)) > TEXT_MAX_LINES:
            return False
    return True


def _as_table(columns: Sequence[Column], rows: Sequence[Sequence[str]], title: str | None) -> Table:
    table = Table(title=title, box=box.SIMPLE_HEAD, title_justify="left", show_edge=False)
    for column in columns:
        if column.kind == "text":
            table.add_column(column.header, overflow="fold", justify=column.justify)
        else:
            table.add_column(column.header, no_wrap=True, justify=column.justify)
    for row in rows:
        table.add_row(*(Text(cell) for cell in row))
    return table


def _wrap(text: str, width: int, first: str, rest: str) -> list[str]:
    # Between words only: a word (an id, a path) is never cut, the terminal folds it whole.
    return textwrap.wrap(
        text,
        width=max(width, 40),
        initial_indent=first,
        subsequent_indent=rest,
        break_long_words=False,
        break_on_hyphens=False,
    )


def _block_lines(columns: Sequence[Column], row: Sequence[str], width: int) -> list[str]:
    head = [cell for column, cell in zip(columns, row, strict=True) if column.in_headline and cell]
    lines = ["  ".join(head)]
    for column, cell in zip(columns, row, strict=True):
        if column.in_headline or not cell:
            continue
        label = f"{_INDENT}{column.header}: "
        if column.kind == "text":
            lines += _wrap(cell, width, label, _INDENT * 2) or [label.rstrip()]
        else:
            lines.append(label + cell)
    return lines


def show(
    console: Console,
    columns: Sequence[Column],
    rows: Sequence[Sequence[str]],
    *,
    title: str | None = None,
) -> None:
    """Print ``rows`` as a table when it fits the terminal, else as one block per record."""
    width = console.width
    if _table_fits(columns, rows, width):
        console.print(_as_table(columns, rows, title))
        return
    if title:
        console.print(title, markup=False, highlight=False, soft_wrap=True)
    for row in rows:
        for line in _block_lines(columns, row, width):
            console.print(line, markup=False, highlight=False, soft_wrap=True)


def show_record(console: Console, fields: Sequence[tuple[str, str, Kind]]) -> None:
    """One record as ``name  value`` lines (``catwalk status``), at any width."""
    pad = max((len(name) for name, _, _ in fields), default=0) + 2
    width = console.width
    for name, value, kind in fields:
        label = name.ljust(pad)
        if kind == "text" and len(label) + len(value) > width:
            lines = _wrap(value, width, label, " " * min(pad, 8))
        elif len(label) + len(value) > width:
            lines = [name, _INDENT + value]  # whole, on a line of its own: copyable
        else:
            lines = [label + value]
        for line in lines:
            console.print(line, markup=False, highlight=False, soft_wrap=True)
