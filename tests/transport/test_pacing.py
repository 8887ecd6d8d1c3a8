"""Pacing holds a provider's rate across processes, measured where it counts: at the server."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio as redis
from hypothesis import given, settings
from hypothesis import strategies as st

from mailroom.transport.base import Envelope, Outcome
from mailroom.transport.pacing import Lane, LocalPacer, Pacer
from mailroom.transport.provider_config import ProviderConfig, Rate
from mailroom.transport.router import ProviderRouter
from mailroom.transport.smtp import SmtpTransport
from mailroom.transport.smtp_config import SmtpConfig
from tests.support.smtp_server import ScriptedHandler, SmtpTestServer

RATE = 200  # per second
WINDOW = 10.0  # seconds


class Clocked(ScriptedHandler):
    """Notes when each message arrives."""

    def __init__(self) -> None:
        super().__init__()
        self.arrivals: list[float] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.arrivals.append(time.monotonic())
        return await super().handle_DATA(server, session, envelope)


@pytest.fixture
async def clocked_server() -> AsyncIterator[tuple[SmtpTestServer, Clocked]]:
    server = SmtpTestServer()
    handler = Clocked()
    server.handler = handler
    await server.start()
    yield server, handler
    await server.stop()


@pytest.mark.slow
async def test_two_processes_together_hold_the_rate_within_5_percent(
    clocked_server: tuple[SmtpTestServer, Clocked],
) -> None:
    server, handler = clocked_server
    prefix = f"test-pacing-{uuid.uuid4().hex[:8]}"
    config = ProviderConfig(
        name="ses",
        smtp=SmtpConfig(host=server.host, port=server.port, timeout=5.0, pool_size=10),
        rate=Rate(RATE, 1.0),
    )
    clients = [redis.Redis.from_url("redis://127.0.0.1:6379/0") for _ in range(2)]
    # Two routers with their own Redis connections and pools: two worker processes.
    routers = [
        ProviderRouter([(config, SmtpTransport(config.smtp, name="ses"))], pacer=Pacer(c, prefix))
        for c in clients
    ]
    envelope = Envelope("app@acme.com", ("user@example.com",), b"Subject: x\r\n\r\nx\r\n")
    deadline = time.monotonic() + WINDOW + 2.0
    outcomes: list[Outcome] = []

    async def keep_sending(router: ProviderRouter) -> None:
        while time.monotonic() < deadline:
            outcomes.append((await router.send(envelope)).outcome)

    try:
        await asyncio.gather(*(keep_sending(r) for r in routers for _ in range(40)))
    finally:
        for router in routers:
            await router.aclose()
        for client in clients:
            keys = [k async for k in client.scan_iter(match=f"{prefix}:*")]
            if keys:
                await client.delete(*keys)
            await client.aclose()
    assert set(outcomes) == {Outcome.ACCEPTED}
    start = handler.arrivals[0] + 1.0
    # Every 10 s window starting at a tenth of a second, once the senders are warm.
    counts = []
    while start + WINDOW <= handler.arrivals[-1]:
        counts.append(sum(1 for t in handler.arrivals if start <= t < start + WINDOW))
        start += 0.1
    assert counts
    expected = RATE * WINDOW
    assert max(counts) <= expected * 1.05
    assert min(counts) >= expected * 0.95
    # Never ahead of the schedule: by any arrival, no more emails than the rate allows since
    # the first, give or take a tenth of a second's worth. (Counting per second instead
    # fails on a busy machine: sends whose slots passed while the event loop was stalled
    # go out late and together, a catch-up that stays behind the schedule, not a burst.)
    first = handler.arrivals[0]
    ahead = max(n + 1 - RATE * (t - first) for n, t in enumerate(handler.arrivals))
    assert ahead <= RATE * 0.1


def test_local_pacing_spaces_slots_at_its_share() -> None:
    now = [100.0]
    pacer = LocalPacer(clock=lambda: now[0], share=0.5)
    lane = Lane("a", 0.01)  # 100/s shared by two: 50/s here
    waits = [pacer.reserve([lane], hold=1.0).wait for _ in range(5)]
    assert waits == pytest.approx([0.0, 0.02, 0.04, 0.06, 0.08])
    # Turned away, each gets its place in line, one interval apart.
    far = [pacer.reserve([lane], hold=0.05) for _ in range(2)]
    assert [g.lane for g in far] == [None, None]
    assert [g.wait for g in far] == pytest.approx([0.12, 0.14])


def test_local_daily_quota_is_its_share() -> None:
    now = [86400.0 * 100 + 10]
    pacer = LocalPacer(clock=lambda: now[0], share=0.5)
    lane = Lane("a", 0.0, daily=6)
    granted = [pacer.reserve([lane], hold=1.0).lane for _ in range(4)]
    assert granted == [lane, lane, lane, None]
    now[0] += 86400
    assert pacer.reserve([lane], hold=1.0).lane == lane


async def test_pacing_falls_back_to_the_share_when_redis_is_unreachable() -> None:
    client = redis.Redis.from_url(
        "redis://127.0.0.1:1/0", socket_connect_timeout=0.5, socket_timeout=0.5
    )
    pacer = Pacer(client, "unreachable")
    pacer.pacers = 2
    lane = Lane("a", 0.01)
    first = await pacer.reserve([lane], hold=1.0)
    second = await pacer.reserve([lane], hold=1.0)
    assert (first.lane, first.wait) == (lane, 0.0)
    assert second.wait == pytest.approx(0.02, abs=0.005)
    await client.aclose()


async def test_emails_turned_away_get_places_in_line() -> None:
    client = redis.Redis.from_url("redis://127.0.0.1:6379/0")
    prefix = f"test-line-{uuid.uuid4().hex[:8]}"
    now = [1_800_000_000.0]
    pacer = Pacer(client, prefix, clock=lambda: now[0])
    lane = Lane("a", 0.5)  # 2/s
    try:
        granted = [await pacer.reserve([lane], hold=1.0) for _ in range(3)]
        assert [(g.lane, g.wait) for g in granted] == [(lane, 0.0), (lane, 0.5), (lane, 1.0)]
        turned_away = [await pacer.reserve([lane], hold=1.0) for _ in range(3)]
        assert [g.lane for g in turned_away] == [None, None, None]
        assert [g.wait for g in turned_away] == pytest.approx([2.0, 2.5, 3.0])
    finally:
        keys = [k async for k in client.scan_iter(match=f"{prefix}:*")]
        if keys:
            await client.delete(*keys)
        await client.aclose()


_LANES = [Lane("a", 0.1), Lane("b", 0.25, daily=4), Lane("c", 0.0, daily=3)]


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.lists(st.sampled_from(range(3)), min_size=1, max_size=3, unique=True),
            st.sampled_from([0.0, 0.05, 0.3, 2.0]),  # seconds the clock moves first
            st.sampled_from([0.0, 0.2, 1.0]),  # hold
        ),
        max_size=25,
    )
)
def test_the_script_decides_as_the_local_pacer_does(
    calls: list[tuple[list[int], float, float]],
) -> None:
    """Redis's script and the local pacer (at a share of 1) are the same algorithm."""

    async def run() -> None:
        client = redis.Redis.from_url("redis://127.0.0.1:6379/0")
        prefix = f"test-same-{uuid.uuid4().hex[:8]}"
        now = [1_800_000_000.0]
        shared, local = (
            Pacer(client, prefix, clock=lambda: now[0]),
            LocalPacer(clock=lambda: now[0]),
        )
        try:
            for lanes, step, hold in calls:
                now[0] += step
                chosen = [_LANES[i] for i in lanes]
                remote = await shared.reserve(chosen, hold)
                alone = local.reserve(chosen, hold)
                assert remote.lane == alone.lane
                assert remote.wait == pytest.approx(alone.wait, abs=0.002)
                assert remote.daily_exhausted == alone.daily_exhausted
        finally:
            keys = [k async for k in client.scan_iter(match=f"{prefix}:*")]
            if keys:
                await client.delete(*keys)
            await client.aclose()

    asyncio.run(run())
