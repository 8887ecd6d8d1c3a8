"""The worker's SMTP client built from the settings: every SMTP_* setting reaches it."""

from __future__ import annotations

import pytest
from structlog.testing import capture_logs

from mailroom.settings import Settings, load_settings
from mailroom.transport.from_settings import (
    MissingSmtpHost,
    smtp_config,
    smtp_transport,
    token_source,
)
from mailroom.transport.oauth2 import ClientCredentials, TokenCommand
from tests.support.tls import PrivateCA


def make(**values: object) -> Settings:
    return load_settings(_env_file=None, smtp_host="smtp.example.com", **values)


def test_every_smtp_setting_reaches_the_client(private_ca: PrivateCA) -> None:
    config = smtp_config(
        make(
            smtp_port=2525,
            smtp_security="starttls",
            smtp_username="mailer@example.com",
            smtp_password="s3cret",
            smtp_timeout=12,
            smtp_data_timeout=300,
            smtp_pool_size=7,
            smtp_pool_idle_seconds=9,
            smtp_ca_file=str(private_ca.cert_file),
            smtp_auth_mechanism="login",
            smtp_ehlo_name="mx.example.org",
        )
    )
    assert (config.host, config.port, config.security) == ("smtp.example.com", 2525, "starttls")
    assert (config.username, config.password) == ("mailer@example.com", "s3cret")
    assert (config.timeout, config.data_timeout) == (12.0, 300.0)
    assert (config.pool_size, config.idle_seconds) == (7, 9.0)
    assert (config.ca_file, config.verify_cert) == (str(private_ca.cert_file), True)
    assert (config.auth_mechanism, config.ehlo_name, config.oauth2) == (
        "login",
        "mx.example.org",
        None,
    )
    assert (config.allow_insecure_auth, config.pipelining) == (False, True)
    assert "s3cret" not in repr(config)


def test_the_default_port_follows_the_security() -> None:
    assert smtp_config(make(smtp_security="tls")).port == 465


def test_a_token_endpoint_or_a_command() -> None:
    endpoint = token_source(
        make(
            smtp_username="m",
            smtp_oauth2_token_url="https://login.example.com/token",
            smtp_oauth2_client_id="app",
            smtp_oauth2_client_secret="x",
        )
    )
    command = token_source(make(smtp_username="m", smtp_oauth2_token_command="print-token -q"))
    assert isinstance(endpoint, ClientCredentials)
    assert isinstance(command, TokenCommand)
    assert token_source(make()) is None


def test_no_host_no_client() -> None:
    with pytest.raises(MissingSmtpHost, match="SMTP_HOST is not set"):
        smtp_config(load_settings(_env_file=None, smtp_host=None))


async def test_certificate_checks_off_are_logged_as_a_warning() -> None:
    with capture_logs() as logs:
        transport = smtp_transport(make(smtp_security="tls", smtp_verify_cert=False))
        quiet = smtp_transport(make(smtp_security="tls"))
    await transport.aclose()
    await quiet.aclose()
    warnings = [e for e in logs if e["event"] == "smtp.certificate_verification_off"]
    assert len(warnings) == 1
    assert warnings[0]["log_level"] == "warning"
    assert "SMTP_CA_FILE" in warnings[0]["hint"]
