"""A command that cannot reach PostgreSQL or Redis says so in one line and exits 1."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from mailroom.cli import app
from mailroom.settings import Settings
from tests.support.cli import cli_environment

NO_SUCH_EMAIL = "00000000-0000-0000-0000-000000000000"


@pytest.mark.parametrize(
    "args",
    [
        ["keys", "list"],
        ["keys", "create", "--name", "x"],
        ["migrate"],
        ["emails", "retry", NO_SUCH_EMAIL],
        ["emails", "requeue", "--dry-run"],
    ],
    ids=" ".join,
)
@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (
            "postgresql+asyncpg://app:s3cret@127.0.0.1:1/mailroom",
            "Cannot reach PostgreSQL at 127.0.0.1:1/mailroom (",
        ),
        (
            "postgresql+asyncpg://app:s3cret@no-such-host.invalid:5432/mailroom",
            "Cannot reach PostgreSQL at no-such-host.invalid:5432/mailroom (unknown host)",
        ),
    ],
    ids=["refused", "unknown-host"],
)
def test_an_unreachable_database_is_one_line_and_exit_1(
    monkeypatch: pytest.MonkeyPatch,
    settings: Settings,
    args: list[str],
    url: str,
    expected: str,
) -> None:
    with cli_environment(monkeypatch, settings, DATABASE_URL=url):
        result = CliRunner().invoke(app, args)
    assert result.exit_code == 1, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    assert lines[0].startswith(expected), lines[0]
    assert "DATABASE_URL" in lines[0]
    assert "s3cret" not in result.output
    assert "Traceback" not in result.output


def test_an_unreachable_redis_is_one_line_and_exit_1(
    monkeypatch: pytest.MonkeyPatch, settings: Settings, clean: None
) -> None:
    # requeue (not a dry run) hands the emails it requeues to Redis; with one failed email
    # the dispatcher's breaker logs and the sweeper catches up, so probe Redis directly.
    with cli_environment(monkeypatch, settings, REDIS_URL="redis://:s3cret@127.0.0.1:1/0"):
        from redis.exceptions import ConnectionError as RedisConnectionError

        from mailroom.cli.unreachable import describe
        from mailroom.settings import get_settings

        line = describe(RedisConnectionError("Error 111 connecting"), get_settings())
    assert line is not None
    assert line.startswith("Cannot reach Redis at 127.0.0.1:1 (Error 111 connecting)")
    assert "s3cret" not in line


def test_other_errors_are_left_alone(settings: Settings) -> None:
    from mailroom.cli.unreachable import describe

    assert describe(ValueError("no"), settings) is None
    assert describe(RuntimeError("x"), settings) is None
