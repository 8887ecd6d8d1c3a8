"""Which project a caller looks at: its own, another (admin only), or every one."""

from __future__ import annotations

import secrets
import uuid

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from mailroom.errors import Forbidden, NotFound
from mailroom.projects.access import ProjectAccess, ProjectRef
from mailroom.projects.models import DEFAULT_PROJECT_ID
from mailroom.projects.names import DEFAULT_PROJECT_NAME
from mailroom.projects.service import create_project

Sessions = async_sessionmaker[AsyncSession]
OWN = ProjectRef(uuid.uuid4(), "own-project")


async def _other(sessions: Sessions) -> ProjectRef:
    async with sessions() as session:
        project = await create_project(session, f"other-{secrets.token_hex(5)}")
        await session.commit()
    return ProjectRef(project.id, project.name)


async def test_a_confined_caller_gets_its_own_project_named_or_not(sessions: Sessions) -> None:
    access = ProjectAccess(own=OWN)
    async with sessions() as session:
        assert await access.project_id(session, None) == OWN.id
        assert await access.project_id(session, OWN.name) == OWN.id


async def test_a_confined_caller_naming_another_project_learns_nothing_about_it(
    sessions: Sessions,
) -> None:
    other = await _other(sessions)
    access = ProjectAccess(own=OWN)
    messages = []
    async with sessions() as session:
        for name in (other.name, DEFAULT_PROJECT_NAME, "never-created"):
            with pytest.raises(Forbidden) as raised:
                await access.project_id(session, name)
            messages.append(raised.value.message)
    assert len(set(messages)) == 1
    assert OWN.name in messages[0] and other.name not in messages[0]


@pytest.mark.parametrize(
    "access", [ProjectAccess(own=OWN, every_project=True), ProjectAccess.operator()]
)
async def test_a_caller_reaching_every_project_may_name_any_or_none(
    sessions: Sessions, access: ProjectAccess
) -> None:
    other = await _other(sessions)
    async with sessions() as session:
        assert await access.project_id(session, None) is None
        assert await access.project_id(session, other.name) == other.id
        assert await access.project_id(session, DEFAULT_PROJECT_NAME) == DEFAULT_PROJECT_ID
        with pytest.raises(NotFound, match="No project named 'never-created'"):
            await access.project_id(session, "never-created")
