"""User text in the terminal is data, never markup: tables whose string cells and headers are shown verbatim.

Rich parses ``[...]`` in strings as markup: a contract's ``between [Company] and [Client]`` printed as
``between  and ``, and a signature block ``[/s/ Jane Doe]`` crashed the command. Every table honed
prints is a :class:`DataTable`; a cell that is honed's own styling says so with :func:`styled`.

Example:
    >>> import io
    >>> from rich.console import Console
    >>> t = DataTable("doc id", "text")
    >>> t.add_row("[/x]", "the [number] of days")
    >>> c = Console(width=80, record=True, file=io.StringIO())
    >>> c.print(t)
    >>> "the [number] of days" in c.export_text()
    True
"""
from __future__ import annotations

import re

from rich.markup import escape
from rich.table import Column, Table
from rich.text import Text


def _data(cell):
    return Text(cell) if isinstance(cell, str) else cell


class DataTable(Table):
    """A :class:`rich.table.Table` whose str headers, title and cells are plain text (use :func:`styled` for markup)."""

    def __init__(self, *headers, title=None, **kw):
        super().__init__(*(Column(header=Text(h)) if isinstance(h, str) else h for h in headers),
                         title=_data(title), **kw)

    def add_row(self, *cells, **kw) -> None:
        super().add_row(*(_data(c) for c in cells), **kw)


def styled(markup: str) -> Text:
    """honed's own styling inside a DataTable cell (``styled("[green]pass[/]")``)."""
    return Text.from_markup(markup)


def shown(value) -> str:
    """`value` (a path, an id, a name) escaped for an f-string that ``console.print`` parses as markup."""
    return escape(str(value))


# By hand: Streamlit has no public Markdown escape. Everything CommonMark, GitHub tables and Streamlit's own syntax (":red[...]" colours, "$" LaTeX) give meaning to.
_MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~$:&])")


def markdown_literal(value) -> str:
    """`value` (an id, a name, a path) escaped for a Streamlit Markdown string (``st.caption``): shown as written.

    Passage text itself goes through ``st.text``, which never interprets it; this is for the short values
    that sit inside a formatted line.

    Example:
        >>> print(markdown_literal("[Company] *draft*"))
        \\[Company\\] \\*draft\\*
    """
    return _MARKDOWN_SPECIAL.sub(r"\\\1", " ".join(str(value).split()))

