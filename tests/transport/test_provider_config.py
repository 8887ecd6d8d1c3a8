"""SMTP_PROVIDERS: every option read, every bad input refused by name, no password shown."""

from __future__ import annotations

from urllib.parse import quote

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailroom.settings import load_settings
from mailroom.transport.from_settings import SmtpSetupError, provider_configs
from mailroom.transport.provider_config import (
    ProviderConfigError,
    Rate,
    mask_url,
    parse_providers,
    parse_rate,
)
from mailroom.transport.smtp_config import SmtpConfig
from tests.support.tls import PrivateCA

DEFAULTS = SmtpConfig(host="", port=0, timeout=12.0)


def test_every_option_reaches_the_provider(private_ca: PrivateCA) -> None:
    [ses, brevo] = parse_providers(
        "smtp://AKIA%2Fuser:p%40ss%3Aword@email-smtp.eu-west-1.amazonaws.com:587"
        "?security=starttls&name=ses&weight=3&rate=14/second&daily=50000&pool=4"
        f"&from=@acme.com&from=@Brand.io&ca_file={private_ca.cert_file}&timeout=5"
        "&auth_mechanism=login&ehlo_name=mx.example.org,\n"
        " smtps://u:pw@smtp-relay.brevo.com?name=brevo&rate=30/minute&verify_cert=false",
        DEFAULTS,
    )
    assert (ses.name, ses.weight, ses.rate, ses.daily) == ("ses", 3, Rate(14, 1.0), 50000)
    assert (ses.smtp.host, ses.smtp.port, ses.smtp.security) == (
        "email-smtp.eu-west-1.amazonaws.com",
        587,
        "starttls",
    )
    assert (ses.smtp.username, ses.smtp.password) == ("AKIA/user", "p@ss:word")
    assert (ses.smtp.pool_size, ses.smtp.timeout, ses.smtp.ca_file) == (
        4,
        5.0,
        str(private_ca.cert_file),
    )
    assert (ses.smtp.auth_mechanism, ses.smtp.ehlo_name) == ("login", "mx.example.org")
    assert ses.from_domains == ("acme.com", "brand.io")
    assert ses.accepts("ACME.com") and not ses.accepts("other.org")
    assert (brevo.smtp.security, brevo.smtp.port, brevo.smtp.verify_cert) == ("tls", 465, False)
    assert (brevo.weight, brevo.rate, brevo.daily, brevo.smtp.timeout) == (
        1,
        Rate(30, 60.0),
        None,
        12.0,
    )
    assert brevo.accepts("anything.org")
    for provider in (ses, brevo):
        assert "word" not in repr(provider) and "pw" not in provider.masked_url()
    assert ses.masked_url().startswith("smtp://AKIA%2Fuser:***@email-smtp")


@pytest.mark.parametrize(
    ("text", "provider", "option"),
    [
        ("smtp://[::1", "#1", "url"),
        ("http://relay.example.com", "#1", "url"),
        ("smtp://relay.example.com?speed=9", "relay.example.com", "speed"),
        ("smtp://relay.example.com?name=a&rate=0/second", "a", "rate"),
        ("smtp://relay.example.com?name=a&rate=fast", "a", "rate"),
        ("smtp://relay.example.com?name=a&daily=0", "a", "daily"),
        ("smtp://relay.example.com?name=a&weight=-1", "a", "weight"),
        ("smtp://relay.example.com?name=a&pool=0", "a", "pool"),
        ("smtp://relay.example.com?name=a&from=acme.com", "a", "from"),
        ("smtp://relay.example.com?name=a&security=ssl", "a", "security"),
        ("smtps://relay.example.com?name=a&security=starttls", "a", "security"),
        ("smtp://relay.example.com?name=a&verify_cert=maybe", "a", "verify_cert"),
        ("smtp://relay.example.com?name=a&ca_file=/nonexistent.pem", "a", "ca_file"),
        ("smtp://relay.example.com?name=a&timeout=0", "a", "timeout"),
        ("smtp://u@relay.example.com?name=a", "a", "url"),
        ("smtp://u:secret@relay.example.com?name=a&security=none", "a", "security"),
        ("smtp://relay.example.com?name=a&name=b", "a", "name"),
        ("smtp://a.example.com?name=x smtp://b.example.com?name=x", "x", "name"),
        ("smtp://a.example.com?weight=0 smtp://b.example.com?weight=0", "", "weight"),
        ("smtp://u:secret@relay.example.com?name=a&oauth2_token_url=ftp://x", "a", "oauth2"),
    ],
)
def test_bad_input_is_refused_naming_the_provider_and_the_option(
    text: str, provider: str, option: str
) -> None:
    with pytest.raises(ProviderConfigError) as caught:
        parse_providers(text, DEFAULTS)
    message = str(caught.value)
    assert f"option {option}" in message
    assert provider in message
    assert "secret@" not in message and ":secret" not in message


def test_an_empty_list_is_refused() -> None:
    with pytest.raises(ProviderConfigError, match="lists no provider"):
        parse_providers(" , ", DEFAULTS)


@given(st.integers(1, 10**6), st.sampled_from(["second", "minute", "hour"]))
def test_rates_read_back_as_written(count: int, unit: str) -> None:
    rate = parse_rate(f"{count}/{unit}")
    assert str(rate) == f"{count}/{unit}"
    assert rate.per_second == pytest.approx(count / {"second": 1, "minute": 60, "hour": 3600}[unit])


@given(st.text(max_size=20))
def test_a_password_is_never_in_the_masked_url_or_an_error(tail: str) -> None:
    password = "Zq9#" + tail  # recognisable wherever it would leak
    url = f"smtp://user:{quote(password, safe='')}@relay.example.com?name=a&speed=1"
    with pytest.raises(ProviderConfigError) as caught:
        parse_providers(url, DEFAULTS)
    assert quote(password, safe="") not in str(caught.value)
    assert password not in str(caught.value)
    assert "***" in mask_url(url)


def test_the_single_host_settings_are_a_one_item_list() -> None:
    [only] = provider_configs(load_settings(_env_file=None, smtp_host="smtp.example.com"))
    assert (only.name, only.smtp.host, only.weight, only.rate) == (
        "smtp.example.com",
        "smtp.example.com",
        1,
        None,
    )


def test_both_forms_at_once_are_refused_saying_which_to_keep() -> None:
    settings = load_settings(
        _env_file=None,
        smtp_host="smtp.example.com",
        smtp_providers="smtp://relay.example.com?name=a",
    )
    with pytest.raises(SmtpSetupError, match=r"keep SMTP_PROVIDERS.*unset SMTP_PROVIDERS"):
        provider_configs(settings)


def test_the_settings_keep_the_providers_secret_and_set_timing_defaults() -> None:
    settings = load_settings(
        _env_file=None,
        smtp_providers="smtp://u:hunter2@relay.example.com?name=a",
        smtp_timeout=7,
        smtp_pool_size=3,
    )
    assert "hunter2" not in repr(settings)
    [a] = provider_configs(settings)
    assert (a.smtp.timeout, a.smtp.pool_size, a.smtp.password) == (7.0, 3, "hunter2")


def test_the_readme_example_is_a_configuration_the_worker_accepts() -> None:
    import re
    import shlex
    from pathlib import Path

    readme = (Path(__file__).parents[2] / "README.md").read_text()
    section = readme.split("## Several providers", 1)[1].split("\n## ", 1)[0]
    [line] = re.findall(r"^SMTP_PROVIDERS=(.*)$", section, re.MULTILINE)
    [ses, brevo] = provider_configs(
        load_settings(_env_file=None, smtp_providers=shlex.split(line)[0])
    )
    assert (ses.name, ses.rate, ses.daily, ses.weight) == ("ses", Rate(14, 1.0), 50000, 3)
    assert (brevo.name, brevo.daily, brevo.smtp.username) == ("brevo", 300, "me@acme.com")
