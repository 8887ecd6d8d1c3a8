"""The `mailroom` command: serving (api, worker, dev), operating (migrate, purge, projects,
keys, emails) and the container health check.

main     the Typer app and the commands that run a process: api, worker, dev, migrate, health
purge    deleting old final emails
projects `mailroom projects …`: create and list projects
keys     `mailroom keys …`: create, list and revoke API keys (each in a project)
emails   `mailroom emails …`: retry, cancel and requeue emails
common   what every command shares: settings, the event loop, the database for one command

Heavier layers (database, queue, API) are imported inside the commands: `mailroom health`,
run by a container's HEALTHCHECK every few seconds, must start fast.
"""

from mailroom.cli.main import app

__all__ = ["app"]
