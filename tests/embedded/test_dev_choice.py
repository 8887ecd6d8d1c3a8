"""Which servers `mailroom dev` uses: configured URLs are used as they are, never replaced."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from mailroom.embedded.dev import dev_services
from mailroom.settings import Settings


def test_configured_urls_are_used_and_nothing_is_started(
    settings: Settings, tmp_path: Path
) -> None:
    home = tmp_path / ".mailroom"
    with dev_services(settings, None, home=home) as (used, lines):
        assert used is settings
    assert lines[0].startswith("PostgreSQL: postgresql+asyncpg://") and "DATABASE_URL" in lines[0]
    assert lines[1].startswith("Redis: redis://") and "REDIS_URL" in lines[1]
    assert not home.exists()


def test_no_embedded_never_starts_them_and_hides_passwords(
    settings_factory: Callable[..., Settings], tmp_path: Path
) -> None:
    settings = settings_factory(
        database_url="postgresql://app:s3cret@127.0.0.1:1/mailroom",
        redis_url="redis://:t0ken@127.0.0.1:1/0",
    )
    home = tmp_path / ".mailroom"
    with dev_services(settings, False, home=home) as (used, lines):
        assert used is settings
    assert "s3cret" not in "".join(lines) and "t0ken" not in "".join(lines)
    assert "127.0.0.1:1" in lines[0] and "127.0.0.1:1" in lines[1]
    assert not home.exists()
