"""db.text_search.contains: a case-insensitive, literal "contains", written so that the
trigram indexes serve it when the text has a trigram and never scan them when it has none."""

from __future__ import annotations

import pytest
from sqlalchemy import literal, select
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from mailroom.db.text_search import contains


@pytest.mark.parametrize(
    ("value", "text", "expected"),
    [
        ("Invoice 42", "VOICE", True),  # a trigram: ILIKE
        ("Invoice 42", "E 4", True),  # none: lower() LIKE lower(), still ignoring case
        ("Invoice 42", "zq", False),
        ("Grüße aus Köln", "GRÜ", True),
        ("Grüße aus Köln", "Ö", True),
        ("100%_ off", "0%_", True),  # % and _ match themselves, on either path
        ("100x1 off", "0%_", False),
        ("100%_ off", "100%_", True),
        ("1000x off", "100%_", False),
        ("a\\b", "\\", True),
        ("ab", "\\", False),
    ],
)
async def test_contains_matches_text_literally_ignoring_case(
    sessions: async_sessionmaker[AsyncSession], value: str, text: str, expected: bool
) -> None:
    async with sessions() as session:
        found = await session.scalar(select(contains(literal(value), text)))
    assert found is expected


@pytest.mark.parametrize(("text", "indexable"), [("voice", True), ("e 4", False), ("%_", False)])
def test_only_a_text_with_a_trigram_is_written_for_the_index(text: str, indexable: bool) -> None:
    dialect = postgresql.dialect()  # type: ignore[no-untyped-call]
    sql = str(contains(literal("x"), text).compile(dialect=dialect))
    assert ("ILIKE" in sql) is indexable
    assert ("lower(" in sql) is not indexable
