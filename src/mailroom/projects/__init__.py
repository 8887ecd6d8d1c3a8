"""Projects: the unit of isolation between the applications that share one Mailroom.

Every API key belongs to one project and every email to its key's project; a key reads
and acts only on its own project's emails unless it holds the ``admin`` scope. What
later attaches to a project (webhooks, suppressions) keys on ``projects.id``.

models   the projects table, and the ``default`` project every install starts with
names    what a project name may be
service  creating, finding and listing projects
access   which projects' emails a caller may reach (``ProjectRef``, ``ProjectAccess``)
"""
