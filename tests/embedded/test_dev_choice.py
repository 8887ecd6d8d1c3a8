"""Which servers `mailroom dev` uses: configured URLs are used as they are, never replaced."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest

from mailroom.embedded.dev import dev_services
from mailroom.settings import Settings, get_settings


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


@pytest.mark.slow
def test_embedded_replaces_both_urls_for_the_whole_process(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Set, so that monkeypatch puts back what dev_services changes in the environment.
    monkeypatch.setenv("DATABASE_URL", settings.database_url)
    monkeypatch.setenv("REDIS_URL", settings.redis_url)
    home = Path(tempfile.mkdtemp(prefix="mailroom-dev-choice-")) / ".mailroom"
    try:
        with dev_services(settings, True, home=home) as (used, lines):
            assert used.database_url != settings.database_url
            assert used.database_url.endswith("/mailroom")
            assert used.redis_url != settings.redis_url
            assert get_settings().database_url == used.database_url  # every reader sees it
            assert (
                lines[0].startswith("PostgreSQL: embedded") and str(home / "postgres") in lines[0]
            )
            assert (
                lines[1].startswith("Redis: embedded Valkey") and str(home / "valkey") in lines[1]
            )
    finally:
        get_settings.cache_clear()
        shutil.rmtree(home.parent, ignore_errors=True)
