"""`.env.example` documents every setting, and copying it to `.env` changes nothing."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from mailroom.settings import Settings

EXAMPLE = Path(__file__).parents[1] / ".env.example"


def test_every_setting_is_documented_and_nothing_else() -> None:
    listed = set(re.findall(r"^#?\s?([A-Z][A-Z0-9_]+)=", EXAMPLE.read_text(), re.MULTILINE))
    assert listed == {name.upper() for name in Settings.model_fields}


def test_the_example_values_are_the_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in Settings.model_fields:
        monkeypatch.delenv(name.upper(), raising=False)
    from_file = Settings(_env_file=EXAMPLE)
    defaults = Settings(_env_file=None)
    assert from_file == defaults
