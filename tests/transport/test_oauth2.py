"""XOAUTH2 tokens from a real token endpoint (uvicorn) or a real command: kept, renewed, dropped."""

from __future__ import annotations

import asyncio
import shlex
import sys
from pathlib import Path

import pytest

from mailroom.transport import oauth2
from mailroom.transport.oauth2 import ClientCredentials, TokenCommand, TokenError
from tests.support.token_endpoint import token_endpoint


class Clock:
    """The token cache's clock (oauth2._now), moved by the test."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    clock = Clock()
    monkeypatch.setattr(oauth2, "_now", clock)
    return clock


# -- a token endpoint -----------------------------------------------------------------------


async def test_a_token_is_kept_until_a_minute_before_it_expires(clock: Clock) -> None:
    with token_endpoint("first", "second", expires_in=3600) as endpoint:
        tokens = ClientCredentials(endpoint.url, "app", "secret")
        assert await tokens.token() == "first"
        clock.now += 3539
        assert await tokens.token() == "first"
        clock.now += 1
        assert await tokens.token() == "second"
    assert len(endpoint.requests) == 2


async def test_a_short_lived_token_is_renewed_halfway(clock: Clock) -> None:
    with token_endpoint("first", "second", expires_in="90") as endpoint:  # a string, as some do
        tokens = ClientCredentials(endpoint.url, "app", "secret")
        assert await tokens.token() == "first"
        clock.now += 44
        assert await tokens.token() == "first"
        clock.now += 1
        assert await tokens.token() == "second"


async def test_concurrent_connections_share_one_request(clock: Clock) -> None:
    with token_endpoint("only") as endpoint:
        tokens = ClientCredentials(endpoint.url, "app", "secret")
        found = await asyncio.gather(*(tokens.token() for _ in range(5)))
    assert found == ["only"] * 5
    assert len(endpoint.requests) == 1


async def test_a_refused_token_is_dropped_once(clock: Clock) -> None:
    with token_endpoint("first", "second", "third") as endpoint:
        tokens = ClientCredentials(endpoint.url, "app", "secret")
        assert await tokens.token() == "first"
        tokens.invalidate("first")
        assert await tokens.token() == "second"
        tokens.invalidate("first")  # a late report about the old token changes nothing
        assert await tokens.token() == "second"
    assert len(endpoint.requests) == 2


@pytest.mark.parametrize(
    ("status", "body", "config_error", "said"),
    [
        (401, {"error": "invalid_client"}, True, "answered 401: invalid_client"),
        (400, {"error": "invalid_scope", "error_description": "AADSTS70011"}, True, "AADSTS70011"),
        (503, {}, False, "answered 503"),
        (200, {"token_type": "Bearer"}, True, "without an access_token"),
    ],
)
async def test_what_a_token_endpoint_refusal_says(
    status: int, body: dict[str, str], config_error: bool, said: str
) -> None:
    with token_endpoint() as endpoint:
        endpoint.failure = (status, body)
        tokens = ClientCredentials(endpoint.url, "app", "the-secret")
        with pytest.raises(TokenError) as caught:
            await tokens.token()
    assert caught.value.config_error is config_error
    assert said in str(caught.value)
    assert "the-secret" not in str(caught.value)


async def test_an_unreachable_endpoint_may_clear_up() -> None:
    with token_endpoint() as endpoint:
        url = endpoint.url
    tokens = ClientCredentials(url, "app", "secret", timeout=2)  # nothing listens there now
    with pytest.raises(TokenError, match="could not be reached") as caught:
        await tokens.token()
    assert caught.value.config_error is False


# -- a command --------------------------------------------------------------------------------


def command(tmp_path: Path, source: str) -> str:
    script = tmp_path / "token.py"
    script.write_text(source)
    return f"{shlex.quote(sys.executable)} {shlex.quote(str(script))}"


async def test_a_command_token_is_kept_for_a_while(tmp_path: Path, clock: Clock) -> None:
    counter = tmp_path / "runs"
    source = (
        "from pathlib import Path\n"
        f"p = Path({str(counter)!r})\n"
        "n = int(p.read_text()) + 1 if p.exists() else 1\n"
        "p.write_text(str(n))\n"
        "print(f'  token-{n}  ')\n"
    )
    tokens = TokenCommand(command(tmp_path, source))
    assert await tokens.token() == "token-1"
    assert await tokens.token() == "token-1"
    tokens.invalidate("token-1")
    assert await tokens.token() == "token-2"
    clock.now += oauth2.COMMAND_TOKEN_SECONDS
    assert await tokens.token() == "token-3"


@pytest.mark.parametrize(
    ("source", "said"),
    [
        ("import sys; print('tok-secret'); sys.exit(3)", "exited with status 3"),
        ("print('')", "printed no single token"),
        ("print('two words')", "printed no single token"),
    ],
)
async def test_a_failing_command_says_how_without_its_output(
    tmp_path: Path, source: str, said: str
) -> None:
    tokens = TokenCommand(command(tmp_path, source))
    with pytest.raises(TokenError) as caught:
        await tokens.token()
    assert said in str(caught.value)
    assert caught.value.config_error is True
    assert "tok-secret" not in str(caught.value) and "two words" not in str(caught.value)


async def test_a_command_that_hangs_times_out(tmp_path: Path) -> None:
    tokens = TokenCommand(command(tmp_path, "import time; time.sleep(30)"), timeout=0.5)
    with pytest.raises(TokenError, match=r"printed no token within 0\.5 s") as caught:
        await tokens.token()
    assert caught.value.config_error is False


async def test_a_command_that_does_not_exist() -> None:
    tokens = TokenCommand("/nonexistent/print-token --scope mail")
    with pytest.raises(TokenError, match="could not be started") as caught:
        await tokens.token()
    assert caught.value.config_error is True
