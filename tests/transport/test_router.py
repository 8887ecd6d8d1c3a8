"""Several providers: weighted choice, failover, throttling, daily quotas, from-rules,
against real SMTP servers started here and pacing shared through the real Redis."""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import replace

import pytest
import redis.asyncio as redis

from mailroom.transport.base import Envelope, Outcome
from mailroom.transport.pacing import Pacer, read_breakers
from mailroom.transport.provider_config import ProviderConfig, Rate
from mailroom.transport.router import ProviderRouter
from mailroom.transport.smtp import SmtpTransport
from mailroom.transport.smtp_config import SmtpConfig
from tests.support.smtp_server import SmtpTestServer

REDIS_URL = "redis://127.0.0.1:6379/0"


class Clock:
    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def servers() -> AsyncIterator[list[SmtpTestServer]]:
    started = [SmtpTestServer() for _ in range(3)]
    for server in started:
        await server.start()
    yield started
    for server in started:
        await server.stop()


@pytest.fixture
async def pacer_client() -> AsyncIterator[redis.Redis]:
    client = redis.Redis.from_url(REDIS_URL)
    yield client
    await client.aclose()


def provider(server: SmtpTestServer, name: str, **options: object) -> ProviderConfig:
    smtp = SmtpConfig(host=server.host, port=server.port, timeout=2.0, pool_size=5)
    return replace(ProviderConfig(name=name, smtp=smtp), **options)  # type: ignore[arg-type]


RouterFactory = Callable[..., ProviderRouter]


@pytest.fixture
async def make_router(pacer_client: redis.Redis) -> AsyncIterator[RouterFactory]:
    made: list[ProviderRouter] = []
    prefix = f"test-router-{uuid.uuid4().hex[:8]}"

    def make(
        *configs: ProviderConfig, clock: Callable[[], float] | None = None, **kwargs: object
    ) -> ProviderRouter:
        pacer = Pacer(pacer_client, prefix, clock=clock) if clock else Pacer(pacer_client, prefix)
        router = ProviderRouter(
            [(c, SmtpTransport(c.smtp, name=c.name)) for c in configs],
            pacer=pacer,
            rng=random.Random(7),
            **kwargs,  # type: ignore[arg-type]
        )
        made.append(router)
        return router

    yield make
    for router in made:
        await router.aclose()
    keys = [k async for k in pacer_client.scan_iter(match=f"{prefix}:*")]
    if keys:
        await pacer_client.delete(*keys)


def envelope(sender: str = "app@acme.com", to: str = "user@example.com") -> Envelope:
    return Envelope(sender, (to,), b"Subject: hi\r\n\r\nhello\r\n")


async def test_weights_share_the_mail(
    servers: list[SmtpTestServer], make_router: RouterFactory
) -> None:
    a, b, _ = servers
    router = make_router(provider(a, "a", weight=3), provider(b, "b", weight=1))
    results = await asyncio.gather(*(router.send(envelope()) for _ in range(200)))
    assert {r.outcome for r in results} == {Outcome.ACCEPTED}
    assert {r.provider for r in results} == {"a", "b"}
    share = len(a.handler.messages()) / 200
    assert 0.65 < share < 0.85


async def test_a_provider_down_mid_run_loses_no_email(
    servers: list[SmtpTestServer], make_router: RouterFactory
) -> None:
    a, b, c = servers
    router = make_router(provider(a, "a"), provider(b, "b"), provider(c, "c"))
    first = await asyncio.gather(*(router.send(envelope()) for _ in range(30)))
    assert {r.outcome for r in first} == {Outcome.ACCEPTED}
    # Down: no new connections, and the open ones end after their current message.
    b.handler.close_after_data = True
    await b.stop()
    second = await asyncio.gather(*(router.send(envelope()) for _ in range(60)))
    failed = [r for r in second if r.outcome is not Outcome.ACCEPTED]
    # An email caught by the outage is an attempt at b marked to go elsewhere at once.
    assert all(r.provider == "b" and r.retry_now for r in failed)
    # Only those already on their way to b when it went down (about its third).
    assert 0 < len(failed) < 35
    assert [p["breaker"] for p in router.stats()] == ["closed", "open", "closed"]
    later = await asyncio.gather(*(router.send(envelope()) for _ in range(30)))
    assert {r.provider for r in later} == {"a", "c"}
    assert {r.outcome for r in later} == {Outcome.ACCEPTED}


async def test_the_breaker_probes_after_the_cooldown(
    servers: list[SmtpTestServer], make_router: RouterFactory
) -> None:
    a, b, _ = servers
    clock = Clock(0.0)
    router = make_router(provider(a, "a"), provider(b, "b", weight=1000), cooldown=30.0)
    for p in router.providers:
        p.breaker._clock = clock  # the breaker's own clock, moved by hand
    port = b.port
    await b.stop()
    result = await router.send(envelope())
    assert (result.provider, result.retry_now, result.outcome) == ("b", True, Outcome.TRANSIENT)
    assert router.providers[1].breaker.state.value == "open"
    assert (await router.send(envelope())).provider == "a"
    await b.start(port)
    clock.now = 31.0
    assert router.providers[1].breaker.state.value == "half_open"
    probe = await router.send(envelope())
    assert (probe.provider, probe.outcome) == ("b", Outcome.ACCEPTED)
    assert router.stats()[1]["breaker"] == "closed"


async def test_recipient_refusals_do_not_trip_the_breaker(
    servers: list[SmtpTestServer], make_router: RouterFactory
) -> None:
    a, b, _ = servers
    a.handler.rcpt_replies["gone@example.com"] = "550 5.1.1 No such user"
    router = make_router(provider(a, "a", weight=1000), provider(b, "b", weight=0))
    for _ in range(5):
        result = await router.send(envelope(to="gone@example.com"))
        assert (result.outcome, result.provider, result.retry_now) == (
            Outcome.PERMANENT,
            "a",
            False,
        )
    assert router.stats()[0]["breaker"] == "closed"


async def test_a_sender_refused_at_mail_fails_over(
    servers: list[SmtpTestServer], make_router: RouterFactory
) -> None:
    a, b, _ = servers

    async def refuse_mail(*args: object) -> str:
        return "554 5.7.1 Sender address not verified"

    a.handler.handle_MAIL = refuse_mail  # type: ignore[attr-defined]
    router = make_router(provider(a, "a", weight=1000), provider(b, "b"))
    first = await router.send(envelope())
    assert (first.provider, first.outcome, first.retry_now) == ("a", Outcome.TRANSIENT, True)
    second = await router.send(envelope())
    assert (second.provider, second.outcome) == ("b", Outcome.ACCEPTED)


async def test_a_throttling_provider_is_slowed_and_its_mail_moves(
    servers: list[SmtpTestServer], make_router: RouterFactory
) -> None:
    a, b, _ = servers
    a.handler.data_replies.extend(["454 4.7.0 Throttling failure: Maximum sending rate exceeded"])
    router = make_router(
        provider(a, "a", weight=1000, rate=Rate(100, 1.0)), provider(b, "b", rate=Rate(100, 1.0))
    )
    result = await router.send(envelope())
    # No attempt is spent on the throttle: the email went to b at once.
    assert (result.provider, result.outcome) == ("b", Outcome.ACCEPTED)
    assert router.stats()[0]["throttled"] == 1
    assert router.stats()[0]["rate"] == pytest.approx(50.0)
    results = await asyncio.gather(*(router.send(envelope()) for _ in range(150)))
    assert {r.outcome for r in results} == {Outcome.ACCEPTED}
    # a now takes 50/s at most: within the pacing hold the rest moved to b.
    assert len(b.handler.messages()) > 40


async def test_a_daily_quota_moves_the_rest_elsewhere_then_to_the_next_day(
    servers: list[SmtpTestServer], make_router: RouterFactory
) -> None:
    a, b, _ = servers
    clock = Clock(1_800_000_000.0)  # 2027-01-15 08:00 UTC
    router = make_router(
        provider(a, "a", weight=1000, daily=5), provider(b, "b", daily=3), clock=clock
    )
    results = [await router.send(envelope()) for _ in range(10)]
    assert [r.provider for r in results[:8]] == ["a"] * 5 + ["b"] * 3
    assert [r.outcome for r in results[8:]] == [Outcome.PACED, Outcome.PACED]
    midnight = (int(clock.now // 86400) + 1) * 86400
    assert results[9].retry_after == pytest.approx(midnight - clock.now, abs=1)
    assert "daily quota" in results[9].message
    clock.now = midnight + 1
    assert (await router.send(envelope())).provider == "a"


async def test_from_rules_route_each_brand_to_its_relay(
    servers: list[SmtpTestServer], make_router: RouterFactory
) -> None:
    a, b, _ = servers
    router = make_router(
        provider(a, "acme", from_domains=("acme.com",)),
        provider(b, "brand", from_domains=("brand.io",)),
    )
    assert (await router.send(envelope("x@acme.com"))).provider == "acme"
    assert (await router.send(envelope("x@Brand.io"))).provider == "brand"
    other = await router.send(envelope("x@other.org"))
    assert other.outcome is Outcome.PERMANENT
    assert "@other.org" in other.message


async def test_breaker_states_are_published_for_ready(
    servers: list[SmtpTestServer], make_router: RouterFactory, pacer_client: redis.Redis
) -> None:
    a, b, _ = servers
    router = make_router(provider(a, "a"), provider(b, "b"))
    await b.stop()
    await asyncio.gather(*(router.send(envelope()) for _ in range(10)))
    assert router.pacer is not None
    await router.pacer.publish({p.name: p.breaker.state for p in router.providers})
    assert await read_breakers(pacer_client, router.pacer.key("x", "y").split(":providers")[0]) == {
        "a": "closed",
        "b": "open",
    }
