"""Fixtures for driving the delivery step (Deliverer) directly, with the in-memory transport.

The `dispatcher` fixture these build on is in tests/conftest.py (the API tests use it too).
"""

from __future__ import annotations

import random

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from mailroom.queue.dispatcher import Dispatcher
from mailroom.settings import Settings
from mailroom.transport.base import MailTransport
from mailroom.transport.memory import MemoryTransport
from mailroom.worker.delivery import Deliverer


def make_deliverer(
    sessions: async_sessionmaker[AsyncSession],
    dispatcher: Dispatcher,
    settings: Settings,
    transport: MailTransport,
) -> Deliverer:
    """A Deliverer over the given transport, with a seeded jitter so retries are repeatable."""
    return Deliverer(
        sessions=sessions,
        dispatcher=dispatcher,
        transport=transport,
        settings=settings,
        rng=random.Random(7),
    )


@pytest.fixture
def transport() -> MemoryTransport:
    return MemoryTransport()


@pytest.fixture
def deliverer(
    sessions: async_sessionmaker[AsyncSession],
    dispatcher: Dispatcher,
    settings: Settings,
    transport: MemoryTransport,
) -> Deliverer:
    return make_deliverer(sessions, dispatcher, settings, transport)
