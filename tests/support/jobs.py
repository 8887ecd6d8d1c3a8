"""A dispatch that keeps the jobs handed to it, for tests that look at what was queued."""

from __future__ import annotations

from collections.abc import Sequence

from mailroom.queue.jobs import Job


class KeptJobs:
    """Stands in for ``Dispatcher.dispatch``: keeps each call's jobs, in order."""

    def __init__(self) -> None:
        self.calls: list[list[Job]] = []

    async def __call__(self, jobs: Sequence[Job]) -> bool:
        self.calls.append(list(jobs))
        return True

    @property
    def jobs(self) -> list[Job]:
        return [job for call in self.calls for job in call]
