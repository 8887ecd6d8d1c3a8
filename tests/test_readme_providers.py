"""Each provider example in README's "Sending through a real provider" is a configuration the
worker accepts and turns into the SMTP client it describes."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from mailroom.settings import Settings, load_settings
from mailroom.transport.from_settings import smtp_config
from mailroom.transport.oauth2 import ClientCredentials, TokenCommand
from tests.support.tls import PrivateCA

README = Path(__file__).parents[1] / "README.md"


def examples() -> dict[str, dict[str, str]]:
    text = README.read_text()
    section = text.split("## Sending through a real provider", 1)[1].split("\n## ", 1)[0]
    found = {}
    for block in re.findall(r"```sh\n(.*?)```", section, re.DOTALL):
        values = {}
        for line in block.splitlines():
            name, _, value = line.partition("=")
            [values[name]] = shlex.split(value)
        found[values["SMTP_HOST"]] = values
    return found


@pytest.fixture(autouse=True)
def _no_mailroom_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in Settings.model_fields:
        monkeypatch.delenv(name.upper(), raising=False)


def test_the_section_has_every_provider() -> None:
    assert set(examples()) == {
        "smtp-relay.brevo.com",
        "email-smtp.eu-west-1.amazonaws.com",
        "smtp.postmarkapp.com",
        "smtp.office365.com",
        "smtp.gmail.com",
        "relay.internal.example.com",
    }


@pytest.mark.parametrize("host", sorted(examples()))
def test_each_example_is_a_working_configuration(host: str, tmp_path: Path) -> None:
    values = examples()[host]
    if "SMTP_CA_FILE" in values:  # the CA file must exist: the test's own stands in for it
        values["SMTP_CA_FILE"] = str(PrivateCA.create(tmp_path).cert_file)
    settings = load_settings(_env_file=None, **{k.lower(): v for k, v in values.items()})
    config = smtp_config(settings)
    assert (config.host, config.port, config.security) == (host, 587, "starttls")
    assert config.verify_cert is True
    assert config.username is not None  # every provider here needs a login
    if values.get("SMTP_AUTH_MECHANISM") == "xoauth2":
        assert config.password is None
        assert isinstance(config.oauth2, ClientCredentials | TokenCommand)
    else:
        assert config.password is not None and config.oauth2 is None
    assert (config.ca_file is not None) == ("SMTP_CA_FILE" in values)
