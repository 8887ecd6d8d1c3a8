"""Which projects' emails a caller may read and act on.

A key reaches its own project's emails only; a key with the ``admin`` scope reaches
every project's, and may narrow that to one with ``?project=``. An operator at the shell
(``mailroom emails …``) reaches every project, like an admin key. Every use case on
existing emails turns its caller's ``ProjectAccess`` into a project id (or None: every
project) with ``project_id`` before it touches a row.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from mailroom.errors import Forbidden, NotFound
from mailroom.projects.service import find_project


@dataclass(frozen=True)
class ProjectRef:
    """A project as the rest of the service refers to it: its id (for rows) and its name
    (for people and responses)."""

    id: uuid.UUID
    name: str


@dataclass(frozen=True)
class ProjectAccess:
    # The caller's own project; None for an operator at the shell.
    own: ProjectRef | None
    # Every project's emails (an admin key, an operator); else only `own`'s.
    every_project: bool = False

    @classmethod
    def operator(cls) -> ProjectAccess:
        return cls(own=None, every_project=True)

    async def project_id(self, session: AsyncSession, requested: str | None) -> uuid.UUID | None:
        """The project a request looks at: ``requested`` if the caller may choose it, its own,
        or None for every project (a caller reaching every project who named none).

        A key confined to its project that names another gets 403 whether or not that
        project exists, so that nobody learns another project's name by trying it.
        """
        if not self.every_project:
            assert self.own is not None, "a caller confined to a project has one"
            if requested is not None and requested != self.own.name:
                raise Forbidden(
                    f"This API key belongs to project {self.own.name!r}; only a key with the "
                    "'admin' scope may look at another project."
                )
            return self.own.id
        if requested is None:
            return None
        project = await find_project(session, requested)
        if project is None:
            raise NotFound(f"No project named {requested[:80]!r}.")
        return project.id
