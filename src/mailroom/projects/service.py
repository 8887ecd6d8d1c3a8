"""Creating, finding and listing projects. Functions flush, never commit."""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from mailroom.errors import InvalidRequest
from mailroom.projects.models import Project
from mailroom.projects.names import check_name


async def create_project(session: AsyncSession, name: str) -> Project:
    try:
        name = check_name(name)
    except ValueError as exc:
        raise InvalidRequest(f"Invalid project name: {exc}.") from None
    # ON CONFLICT: two concurrent creations of one name give one project and one clear error.
    inserted = await session.execute(
        insert(Project)
        .values(id=uuid.uuid4(), name=name)
        .on_conflict_do_nothing(index_elements=[Project.name])
        .returning(Project.id)
    )
    project_id = inserted.scalar_one_or_none()
    if project_id is None:
        raise InvalidRequest(f"A project named {name!r} exists.")
    project = await session.get(Project, project_id)
    assert project is not None
    return project


async def find_project(session: AsyncSession, name: str) -> Project | None:
    result = await session.execute(select(Project).where(Project.name == name))
    return result.scalar_one_or_none()


async def list_projects(session: AsyncSession) -> list[Project]:
    result = await session.execute(select(Project).order_by(Project.created_at, Project.name))
    return list(result.scalars())
