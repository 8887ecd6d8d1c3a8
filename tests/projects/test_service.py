"""Creating, finding and listing projects against real PostgreSQL."""

from __future__ import annotations

import asyncio
import secrets

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from mailroom.errors import InvalidRequest
from mailroom.projects.models import DEFAULT_PROJECT_ID
from mailroom.projects.names import DEFAULT_PROJECT_NAME
from mailroom.projects.service import create_project, find_project, list_projects

Sessions = async_sessionmaker[AsyncSession]


def _name() -> str:
    return f"proj-{secrets.token_hex(5)}"


async def test_the_default_project_exists_with_its_fixed_id(sessions: Sessions) -> None:
    async with sessions() as session:
        default = await find_project(session, DEFAULT_PROJECT_NAME)
    assert default is not None and default.id == DEFAULT_PROJECT_ID


async def test_a_created_project_is_found_and_listed(sessions: Sessions) -> None:
    name = _name()
    async with sessions() as session:
        created = await create_project(session, name)
        await session.commit()
    assert created.name == name and created.created_at is not None
    async with sessions() as session:
        found = await find_project(session, name)
        listed = [p.name for p in await list_projects(session)]
    assert found is not None and found.id == created.id
    assert listed[0] == DEFAULT_PROJECT_NAME  # the oldest first
    assert name in listed


async def test_a_name_is_taken_once_even_by_concurrent_creations(sessions: Sessions) -> None:
    name = _name()

    async def create() -> str:
        async with sessions() as session:
            try:
                await create_project(session, name)
            except InvalidRequest as exc:
                return exc.message
            await session.commit()
            return "created"

    outcomes = await asyncio.gather(*(create() for _ in range(4)))
    assert outcomes.count("created") == 1, outcomes
    assert all(o == f"A project named {name!r} exists." for o in outcomes if o != "created")


@pytest.mark.parametrize("name", ["Billing", "two words", ""])
async def test_an_invalid_name_is_refused(sessions: Sessions, name: str) -> None:
    async with sessions() as session:
        with pytest.raises(InvalidRequest, match="Invalid project name"):
            await create_project(session, name)


async def test_an_unknown_name_is_not_found(sessions: Sessions) -> None:
    async with sessions() as session:
        assert await find_project(session, _name()) is None
