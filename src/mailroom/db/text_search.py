"""Case-insensitive "contains" filters, served by pg_trgm's trigram indexes when they can be.

A GIN trigram index (``gin_trgm_ops``) answers ``column ILIKE '%text%'`` from the trigrams
of ``text``; a text with no run of three letters or digits has none (pg_trgm makes
trigrams from words only), and the index would then return every row of the table to be
checked one by one. Such a text is matched as ``lower(column) LIKE lower(…)``, which no
index serves; statistics of ``lower(column)`` (migration 0012) tell the planner how common
the text is, so it walks the caller's order (newest first) and stops once the page is full
when the text is common, and reads every row once (in parallel) when it is rare.
"""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import ColumnElement, func, literal

_TRIGRAM_WORD = re.compile(r"[^\W_]{3}")  # three word characters in a row (as pg_trgm's)


def _escape_like(text: str) -> str:
    """``text`` matched literally inside a LIKE pattern (escape character ``\\``)."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def contains(column: Any, text: str) -> ColumnElement[bool]:
    """``column`` contains ``text``, ignoring case."""
    pattern = f"%{_escape_like(text)}%"
    if _TRIGRAM_WORD.search(text):
        return column.ilike(pattern, escape="\\")  # type: ignore[no-any-return]
    return func.lower(column).like(func.lower(literal(pattern)), escape="\\")
