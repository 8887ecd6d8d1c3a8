"""Rate limiting POST /send: headers, budgets per key and per client IP, proxies, Redis down."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
import redis.asyncio as redis
from asgi_lifespan import LifespanManager
from fastapi import Request
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from mailroom.api.app import create_app
from mailroom.api.context import client_address
from mailroom.api.ratelimit import SendRateLimiter
from mailroom.settings import Settings
from tests.conftest import make_key

VALID: dict[str, Any] = {"to": "jane@example.com", "subject": "Hello", "text": "Hi there"}
HEADERS = ("RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset", "RateLimit-Policy")


def _random_ip() -> str:
    """A documentation-range address of its own, so no other test shares its IP budget."""
    return f"198.18.{secrets.randbelow(256)}.{secrets.randbelow(254) + 1}"


@asynccontextmanager
async def _client(
    settings: Settings, *, key: str | None = None, peer: str = "127.0.0.1"
) -> AsyncIterator[httpx.AsyncClient]:
    """The API as seen from the TCP peer ``peer``."""
    app = create_app(settings)
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(
            app=manager.app, raise_app_exceptions=False, client=(peer, 50000)
        )
        async with httpx.AsyncClient(
            transport=transport, base_url="http://mailroom.test", headers=headers
        ) as client:
            yield client


def _rate_limited(response: httpx.Response) -> int:
    """Asserts a proper 429 and returns its Retry-After."""
    assert response.status_code == 429, response.text
    assert response.headers["content-type"] == "application/json"
    error = response.json()["error"]
    assert error["code"] == "rate_limited"
    assert error["message"]
    retry_after = int(response.headers["Retry-After"])
    assert retry_after >= 1
    assert error["details"] == {"retryAfter": retry_after}
    assert response.headers["RateLimit-Remaining"] == "0"
    return retry_after


@pytest.fixture
def fast(settings_factory: Callable[..., Settings]) -> Settings:
    return settings_factory(send_rate_limit="100/second")


async def test_every_send_response_carries_the_rate_limit_headers(
    fast: Settings, sessions: async_sessionmaker[AsyncSession], clean: None
) -> None:
    key = await make_key(sessions)
    async with _client(fast, key=key, peer=_random_ip()) as client:
        accepted = await client.post("/send", json=VALID)
        invalid = await client.post("/send", json={"to": "not an address"})
        unauthorized = await client.post(
            "/send", json=VALID, headers={"Authorization": "Bearer mr_unknownunknownunknown"}
        )
    assert accepted.status_code == 202, accepted.text
    assert invalid.status_code == 422, invalid.text
    assert unauthorized.status_code == 401, unauthorized.text
    for response in (accepted, invalid, unauthorized):
        for header in HEADERS:
            assert header in response.headers, (response.status_code, header)
        assert response.headers["RateLimit-Limit"] == "100"
        assert response.headers["RateLimit-Policy"] == "100;w=1"
        assert int(response.headers["RateLimit-Reset"]) >= 0
        assert "Retry-After" not in response.headers
    # The key's budget is counted down by its own requests (the 401 was counted per IP).
    assert int(accepted.headers["RateLimit-Remaining"]) == 99
    assert int(invalid.headers["RateLimit-Remaining"]) == 98
    assert int(unauthorized.headers["RateLimit-Remaining"]) == 99


async def test_other_endpoints_are_not_rate_limited(
    settings_factory: Callable[..., Settings],
    sessions: async_sessionmaker[AsyncSession],
    clean: None,
) -> None:
    key = await make_key(sessions, rate_limit="1/minute")
    async with _client(settings_factory(), key=key) as client:
        for _ in range(3):
            response = await client.get("/logs/email", params={"limit": 1})
            assert response.status_code == 200
            assert "RateLimit-Limit" not in response.headers


async def test_200_requests_in_a_second_at_100_per_second(
    fast: Settings, sessions: async_sessionmaker[AsyncSession], clean: None
) -> None:
    key = await make_key(sessions)
    async with _client(fast, key=key) as client:
        # Resolve the key once so the burst measures the limiter, not key lookups.
        assert (await client.get("/logs/email", params={"limit": 1})).status_code == 200
        responses: list[httpx.Response] = []
        started = time.monotonic()
        for _ in range(4):
            responses += await asyncio.gather(
                *(client.post("/send", json=VALID) for _ in range(50))
            )
        elapsed = time.monotonic() - started

        statuses = [r.status_code for r in responses]
        assert set(statuses) <= {202, 429}, statuses
        # A sliding window: a burst that lasts T seconds can get about 100 * (1 + T)
        # through (T is a fraction of a second on an idle machine, more on a busy one).
        accepted = statuses.count(202)
        assert 90 <= accepted <= 100 * (1 + elapsed) + 10, (accepted, elapsed)
        retry_afters = [_rate_limited(r) for r in responses if r.status_code == 429]
        assert all(1 <= value <= 2 for value in retry_afters), retry_afters

        stored = (await client.get("/logs/email", params={"limit": 1})).json()
        assert stored["pagination"]["total"] == statuses.count(202)

        # A client that honours Retry-After gets through. Only a 429 carries one, and the
        # burst's last response need not be a 429: a burst that a busy machine spreads over
        # more than the window finds room again by its end.
        refused = [r for r in responses if r.status_code == 429]
        for _ in range(20):
            if refused:
                break
            more = await asyncio.gather(*(client.post("/send", json=VALID) for _ in range(50)))
            refused = [r for r in more if r.status_code == 429]
        assert refused, "no request was refused"
        await asyncio.sleep(_rate_limited(refused[-1]))
        again = await client.post("/send", json=VALID)
        assert again.status_code == 202, again.text


async def test_a_per_key_limit_overrides_the_default(
    fast: Settings, sessions: async_sessionmaker[AsyncSession], clean: None
) -> None:
    key = await make_key(sessions, rate_limit="3/minute")
    async with _client(fast, key=key) as client:
        accepted = [await client.post("/send", json=VALID) for _ in range(3)]
        refused = await client.post("/send", json=VALID)
    assert [r.status_code for r in accepted] == [202, 202, 202]
    assert [r.headers["RateLimit-Remaining"] for r in accepted] == ["2", "1", "0"]
    assert all(r.headers["RateLimit-Limit"] == "3" for r in accepted)
    assert all(r.headers["RateLimit-Policy"] == "3;w=60" for r in accepted)
    retry_after = _rate_limited(refused)
    # The 3 requests of this minute weigh on the next one too: one more fits once their
    # weight has dropped to 2, a third of the way into the next minute (at most 80 s).
    assert retry_after <= 80
    assert refused.headers["RateLimit-Limit"] == "3"


async def test_two_keys_have_separate_budgets(
    fast: Settings, sessions: async_sessionmaker[AsyncSession], clean: None
) -> None:
    first = await make_key(sessions, rate_limit="3/minute")
    second = await make_key(sessions, rate_limit="3/minute")
    async with _client(fast, key=first) as one, _client(fast, key=second) as two:
        for _ in range(3):
            assert (await one.post("/send", json=VALID)).status_code == 202
        _rate_limited(await one.post("/send", json=VALID))

        response = await two.post("/send", json=VALID)
        assert response.status_code == 202, response.text
        assert response.headers["RateLimit-Remaining"] == "2"
        # The first key is still out of budget.
        _rate_limited(await one.post("/send", json=VALID))


# -- without a valid key: per client IP ------------------------------------------------


@pytest.fixture
def per_ip(settings_factory: Callable[..., Settings]) -> Settings:
    return settings_factory(send_rate_limit="5/minute")


async def test_requests_without_a_valid_key_are_limited_per_ip(
    per_ip: Settings, sessions: async_sessionmaker[AsyncSession], clean: None
) -> None:
    peer = _random_ip()
    async with _client(per_ip, peer=peer) as anonymous:
        for _ in range(5):
            response = await anonymous.post("/send", json=VALID)
            assert response.status_code == 401, response.text
            assert response.json()["error"]["code"] == "unauthorized"
        _rate_limited(await anonymous.post("/send", json=VALID))
        # A wrong key from the same address spends the same budget.
        _rate_limited(
            await anonymous.post(
                "/send", json=VALID, headers={"Authorization": "Bearer mr_nosuchkeynosuchkey"}
            )
        )

    # A valid key from that address has its own budget.
    key = await make_key(sessions)
    async with _client(per_ip, key=key, peer=peer) as client:
        assert (await client.post("/send", json=VALID)).status_code == 202
    # Another address is untouched.
    async with _client(per_ip, peer=_random_ip()) as elsewhere:
        assert (await elsewhere.post("/send", json=VALID)).status_code == 401


async def test_a_body_that_is_not_json_is_rate_limited_too(per_ip: Settings, clean: None) -> None:
    # README: every /send response carries the RateLimit headers, and requests without
    # a valid key are limited per IP. A body that is not JSON must not slip past both.
    async with _client(per_ip, peer=_random_ip()) as anonymous:
        responses = [
            await anonymous.post(
                "/send", content=b"{not json", headers={"Content-Type": "application/json"}
            )
            for _ in range(6)
        ]
    for response in responses:
        for header in HEADERS:
            assert header in response.headers, (response.status_code, header)
    _rate_limited(responses[-1])


async def test_x_forwarded_for_is_ignored_from_an_untrusted_peer(
    settings_factory: Callable[..., Settings], clean: None
) -> None:
    for trusted in ("", "10.0.0.0/8"):
        settings = settings_factory(send_rate_limit="5/minute", trusted_proxies=trusted)
        async with _client(settings, peer=_random_ip()) as anonymous:
            for _ in range(5):
                response = await anonymous.post(
                    "/send", json=VALID, headers={"X-Forwarded-For": _random_ip()}
                )
                assert response.status_code == 401, response.text
            # A new forwarded address does not buy a new budget.
            _rate_limited(
                await anonymous.post("/send", json=VALID, headers={"X-Forwarded-For": _random_ip()})
            )


async def test_x_forwarded_for_is_honoured_from_a_trusted_proxy(
    settings_factory: Callable[..., Settings], clean: None
) -> None:
    settings = settings_factory(send_rate_limit="5/minute", trusted_proxies="127.0.0.1")
    first, second = _random_ip(), _random_ip()
    while second == first:
        second = _random_ip()
    async with _client(settings, peer="127.0.0.1") as proxy:
        for _ in range(5):
            response = await proxy.post("/send", json=VALID, headers={"X-Forwarded-For": first})
            assert response.status_code == 401, response.text
        _rate_limited(await proxy.post("/send", json=VALID, headers={"X-Forwarded-For": first}))
        # A client spoofing the left-most hop is still counted by the hop the proxy added.
        _rate_limited(
            await proxy.post("/send", json=VALID, headers={"X-Forwarded-For": f"{second}, {first}"})
        )

        other = await proxy.post("/send", json=VALID, headers={"X-Forwarded-For": second})
        assert other.status_code == 401, other.text
        assert other.headers["RateLimit-Remaining"] == "4"


# -- the client's address: uvicorn's ProxyHeadersMiddleware, as create_app mounts it -----


async def _client_seen(
    settings_factory: Callable[..., Settings],
    peer: str,
    forwarded: tuple[str, ...],
    proxies: str = "10.0.0.0/8, 2001:db8::/32",
) -> str:
    app = create_app(settings_factory(trusted_proxies=proxies))

    @app.get("/test/client")
    async def client(request: Request) -> str:
        return client_address(request.scope)

    transport = httpx.ASGITransport(app=app, client=(peer, 40000))
    async with httpx.AsyncClient(transport=transport, base_url="http://mailroom.test") as http:
        response = await http.get(
            "/test/client", headers=[("X-Forwarded-For", value) for value in forwarded]
        )
    assert response.status_code == 200, response.text
    seen: str = response.json()
    return seen


@pytest.mark.parametrize(
    ("peer", "forwarded", "expected"),
    [
        pytest.param("203.0.113.9", (), "203.0.113.9", id="no-header"),
        pytest.param("203.0.113.9", ("198.51.100.7",), "203.0.113.9", id="untrusted-peer"),
        pytest.param("10.0.0.1", (), "10.0.0.1", id="trusted-peer-no-header"),
        pytest.param("10.0.0.1", ("198.51.100.7",), "198.51.100.7", id="one-hop"),
        pytest.param(
            "10.0.0.1", ("198.51.100.7, 10.0.0.2",), "198.51.100.7", id="through-two-proxies"
        ),
        pytest.param(
            "10.0.0.1", ("1.2.3.4, 198.51.100.7",), "198.51.100.7", id="spoofed-left-most"
        ),
        pytest.param(
            "10.0.0.1",
            ("1.2.3.4", "198.51.100.7, 10.0.0.3"),
            "198.51.100.7",
            id="several-headers-are-one-list",
        ),
        pytest.param("10.0.0.1", ("10.0.0.2, 10.0.0.3",), "10.0.0.2", id="all-trusted"),
        # What the nearest trusted proxy wrote is taken as it is, even when it is no
        # address: only our own proxies write there (a client's own hops are further left).
        pytest.param("10.0.0.1", ("garbage",), "garbage", id="garbage-hop"),
        pytest.param(
            "10.0.0.1", ("198.51.100.7, not-an-ip",), "not-an-ip", id="garbage-nearest-hop"
        ),
        pytest.param(
            "10.0.0.1", ("198.51.100.7, garbage, 10.0.0.5",), "garbage", id="garbage-after-proxy"
        ),
        pytest.param("10.0.0.1", ("198.51.100.7:4711",), "198.51.100.7", id="hop-with-port"),
        pytest.param("10.0.0.1", (" , ,",), "10.0.0.1", id="empty-hops"),
        pytest.param(
            "2001:db8::1", ("2001:DB8:FFFF::1, 2606:4700::0001",), "2606:4700::0001", id="v6"
        ),
        pytest.param("not-an-ip", ("198.51.100.7",), "not-an-ip", id="peer-not-an-ip"),
    ],
)
async def test_client_address(
    settings_factory: Callable[..., Settings],
    peer: str,
    forwarded: tuple[str, ...],
    expected: str,
) -> None:
    assert await _client_seen(settings_factory, peer, forwarded) == expected


async def test_the_client_address_trusts_no_one_without_proxies(
    settings_factory: Callable[..., Settings],
) -> None:
    seen = await _client_seen(settings_factory, "10.0.0.1", ("198.51.100.7",), proxies="")
    assert seen == "10.0.0.1"


def test_the_client_address_without_a_peer_is_unknown() -> None:
    assert client_address({"type": "http", "client": None}) == "unknown"


# -- Redis down: fail open -------------------------------------------------------------


async def test_the_limiter_lets_requests_through_when_redis_is_unreachable(
    settings_factory: Callable[..., Settings],
) -> None:
    limiter = SendRateLimiter(settings_factory(redis_url="redis://127.0.0.1:1/0"))
    try:
        started = time.monotonic()
        assert await limiter.hit("key:unreachable", "1/minute") is None
        assert await limiter.hit("key:unreachable", "1/minute") is None
        assert time.monotonic() - started < 2.5
    finally:
        await limiter.aclose()


async def test_the_limiter_gives_up_on_a_redis_that_never_answers(
    settings_factory: Callable[..., Settings],
) -> None:
    writers: list[asyncio.StreamWriter] = []

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)
        await reader.read()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    limiter = SendRateLimiter(settings_factory(redis_url=f"redis://127.0.0.1:{port}/0"))
    try:
        started = time.monotonic()
        assert await limiter.hit("key:silent") is None
        assert time.monotonic() - started < 3
    finally:
        await limiter.aclose()
        for writer in writers:
            writer.close()
        server.close()
        await server.wait_closed()


async def test_send_is_accepted_without_limits_while_redis_is_down(
    settings_factory: Callable[..., Settings],
    sessions: async_sessionmaker[AsyncSession],
    clean: None,
) -> None:
    key = await make_key(sessions, rate_limit="1/minute")
    # The queue hand-over also fails; keep its wait short (the sweeper covers it).
    settings = settings_factory(redis_url="redis://127.0.0.1:1/0", enqueue_timeout=0.2)
    async with _client(settings, key=key) as client:
        responses = [await client.post("/send", json=VALID) for _ in range(3)]
    assert [r.status_code for r in responses] == [202, 202, 202]
    assert all("RateLimit-Limit" not in r.headers for r in responses)


async def test_the_limiter_reloads_its_script_after_redis_forgot_it(
    settings_factory: Callable[..., Settings], redis_client: redis.Redis
) -> None:
    limiter = SendRateLimiter(settings_factory())
    identity = f"key:{secrets.token_hex(4)}"
    try:
        first = await limiter.hit(identity, "5/minute")
        await redis_client.script_flush()  # as a Redis restart does
        second = await limiter.hit(identity, "5/minute")
        # Concurrent hits share one pipeline; each is counted once.
        rest = await asyncio.gather(*(limiter.hit(identity, "5/minute") for _ in range(4)))
    finally:
        await limiter.aclose()
    assert first is not None and second is not None
    assert (first.remaining, second.remaining) == (4, 3)
    answers = [r for r in rest if r is not None]
    assert len(answers) == 4
    assert sorted(r.allowed for r in answers) == [False, True, True, True]
    assert min(r.remaining for r in answers) == 0


# -- a busy event loop or one slow answer does not switch limits off ----------------------


async def test_a_busy_event_loop_does_not_switch_the_limiter_off(
    settings_factory: Callable[..., Settings],
) -> None:
    limiter = SendRateLimiter(settings_factory())
    identity = f"key:{secrets.token_hex(4)}"
    try:
        first = asyncio.create_task(limiter.hit(identity, "1/minute"))
        # The loop is held for longer than the Redis timeout right after the hit is
        # submitted (another request's CPU work): that is not Redis being slow.
        asyncio.get_running_loop().call_soon(time.sleep, 1.3)
        answered = await first
        second = await limiter.hit(identity, "1/minute")
    finally:
        await limiter.aclose()
    assert answered is not None and answered.allowed
    assert second is not None and not second.allowed  # the limit still holds


class FlakyRedis:
    """A TCP proxy to the test Redis whose first connection never answers."""

    def __init__(self, target: tuple[str, int]) -> None:
        self._target = target
        self.connections = 0
        self._server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []

    async def __aenter__(self) -> str:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        return f"redis://127.0.0.1:{port}/0"

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        for writer in self._writers:
            writer.close()
        self._server.close()
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self._writers.append(writer)
        if self.connections == 1:
            await reader.read()  # swallow everything, answer nothing
            return
        upstream_reader, upstream_writer = await asyncio.open_connection(*self._target)
        self._writers.append(upstream_writer)

        async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            while data := await source.read(65536):
                sink.write(data)
                await sink.drain()

        await asyncio.gather(
            pipe(reader, upstream_writer), pipe(upstream_reader, writer), return_exceptions=True
        )


async def test_one_slow_answer_lets_that_request_through_and_keeps_the_limits(
    settings_factory: Callable[..., Settings],
) -> None:
    from tests.conftest import REDIS_URL

    target = REDIS_URL.removeprefix("redis://").split("/")[0].split(":")
    async with FlakyRedis((target[0], int(target[1]))) as url:
        limiter = SendRateLimiter(settings_factory(redis_url=url))
        identity = f"key:{secrets.token_hex(4)}"
        try:
            lost = await limiter.hit(identity, "1/minute")  # its call times out
            first = await limiter.hit(identity, "1/minute")
            second = await limiter.hit(identity, "1/minute")
        finally:
            await limiter.aclose()
    assert lost is None  # let through, unlimited
    assert first is not None and first.allowed
    assert second is not None and not second.allowed


async def test_redis_down_switches_limits_off_at_once_and_back_on_later(
    settings_factory: Callable[..., Settings],
) -> None:
    limiter = SendRateLimiter(settings_factory(redis_url="redis://127.0.0.1:1/0"))
    try:
        assert await limiter.hit("key:refused", "1/minute") is None
        # A refused connection is an outage: the next request does not even try.
        started = time.monotonic()
        assert await limiter.hit("key:refused", "1/minute") is None
        assert time.monotonic() - started < 0.05
    finally:
        await limiter.aclose()
