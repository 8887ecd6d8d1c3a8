"""The SMTP settings taken together: security, CA, authentication, OAuth2, EHLO name.

A combination that cannot work stops the process at start with a message naming the
variables, and never with a secret in it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from mailroom.settings import Settings
from tests.support.tls import PrivateCA
from tests.test_settings import config_error, settings

pytestmark = pytest.mark.usefixtures("_no_mailroom_environment")

TOKEN_URL = "https://login.microsoftonline.com/tenant/oauth2/v2.0/token"


@pytest.fixture
def _no_mailroom_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in Settings.model_fields:
        monkeypatch.delenv(name.upper(), raising=False)


def test_defaults() -> None:
    s = settings()
    assert (s.smtp_allow_insecure_auth, s.smtp_ca_file, s.smtp_verify_cert) == (False, None, True)
    assert (s.smtp_data_timeout, s.smtp_pool_idle_seconds) == (600.0, 20.0)
    assert (s.smtp_auth_mechanism, s.smtp_ehlo_name) == ("auto", None)
    assert s.smtp_oauth2_token_url is None and s.smtp_oauth2_token_command is None


def test_blank_values_mean_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("CA_FILE", "OAUTH2_TOKEN_URL", "OAUTH2_CLIENT_SECRET", "EHLO_NAME"):
        monkeypatch.setenv(f"SMTP_{name}", " ")
    s = settings()
    assert (s.smtp_ca_file, s.smtp_oauth2_token_url, s.smtp_ehlo_name) == (None, None, None)
    assert s.smtp_oauth2_client_secret is None


# -- no password in clear text -----------------------------------------------------------


def test_credentials_without_encryption_are_refused() -> None:
    message = config_error(
        smtp_security="none", smtp_username="mailer", smtp_password="s3cret-value"
    )
    assert "SMTP_SECURITY=none" in message and "SMTP_ALLOW_INSECURE_AUTH=true" in message
    assert "s3cret-value" not in message


def test_credentials_without_encryption_when_allowed_on_purpose() -> None:
    s = settings(
        smtp_security="none",
        smtp_username="mailer",
        smtp_password="s3cret",
        smtp_allow_insecure_auth=True,
    )
    assert s.smtp_allow_insecure_auth is True


@pytest.mark.parametrize("security", ["starttls", "tls"])
def test_credentials_over_tls_are_fine(security: str) -> None:
    settings(smtp_security=security, smtp_username="mailer", smtp_password="s3cret")


# -- certificates ---------------------------------------------------------------------------


def test_a_ca_file(tmp_path: Path) -> None:
    ca = PrivateCA.create(tmp_path)
    assert settings(smtp_ca_file=str(ca.cert_file)).smtp_ca_file == ca.cert_file


def test_a_missing_ca_file_is_named(tmp_path: Path) -> None:
    message = config_error(smtp_ca_file=str(tmp_path / "nowhere.pem"))
    assert "SMTP_CA_FILE:" in message and "does not exist" in message


def test_a_ca_file_without_certificates_is_refused(tmp_path: Path) -> None:
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    assert "is not a PEM bundle of CA certificates" in config_error(smtp_ca_file=str(junk))


def test_a_ca_file_with_verification_off_is_contradictory(tmp_path: Path) -> None:
    ca = PrivateCA.create(tmp_path)
    message = config_error(smtp_ca_file=str(ca.cert_file), smtp_verify_cert=False)
    assert "SMTP_CA_FILE" in message and "SMTP_VERIFY_CERT=false" in message


# -- authentication ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ({"smtp_username": "mailer"}, "SMTP_USERNAME and SMTP_PASSWORD must be set together"),
        ({"smtp_auth_mechanism": "xoauth2", "smtp_username": "m"}, "needs SMTP_OAUTH2_TOKEN_URL"),
        (
            {"smtp_oauth2_token_url": TOKEN_URL, "smtp_username": "m"},
            "SMTP_OAUTH2_TOKEN_URL needs SMTP_OAUTH2_CLIENT_ID",
        ),
        (
            {"smtp_oauth2_client_id": "app", "smtp_oauth2_client_secret": "x"},
            "need _TOKEN_URL",
        ),
        (
            {"smtp_oauth2_token_command": "gcloud auth print-access-token"},
            "XOAUTH2 (SMTP_OAUTH2_*) needs SMTP_USERNAME",
        ),
        (
            {
                "smtp_username": "m",
                "smtp_oauth2_token_command": "print-token",
                "smtp_oauth2_token_url": TOKEN_URL,
                "smtp_oauth2_client_id": "app",
                "smtp_oauth2_client_secret": "x",
            },
            "not both",
        ),
        (
            {
                "smtp_username": "m",
                "smtp_password": "p",
                "smtp_auth_mechanism": "xoauth2",
                "smtp_oauth2_token_command": "print-token",
            },
            "SMTP_PASSWORD is not used with SMTP_AUTH_MECHANISM=xoauth2",
        ),
        (
            {
                "smtp_username": "m",
                "smtp_auth_mechanism": "plain",
                "smtp_oauth2_token_command": "t",
            },
            "SMTP_AUTH_MECHANISM=plain needs SMTP_PASSWORD",
        ),
        (
            {
                "smtp_username": "m",
                "smtp_password": "p",
                "smtp_auth_mechanism": "login",
                "smtp_oauth2_token_command": "t",
            },
            "SMTP_OAUTH2_* are not used with SMTP_AUTH_MECHANISM=login",
        ),
        ({"smtp_auth_mechanism": "login"}, "SMTP_AUTH_MECHANISM=login needs SMTP_USERNAME"),
    ],
)
def test_combinations_that_cannot_work(values: dict[str, str], expected: str) -> None:
    message = config_error(**values)
    assert expected in message
    assert "print-token" not in message  # a command line may hold a secret


def test_office_365_with_a_token_endpoint() -> None:
    s = settings(
        smtp_host="smtp.office365.com",
        smtp_username="mailer@contoso.com",
        smtp_auth_mechanism="xoauth2",
        smtp_oauth2_token_url=TOKEN_URL,
        smtp_oauth2_client_id="app-id",
        smtp_oauth2_client_secret="client-s3cret",
        smtp_oauth2_scope="https://outlook.office365.com/.default",
    )
    assert s.smtp_oauth2_client_secret is not None
    assert s.smtp_oauth2_client_secret.get_secret_value() == "client-s3cret"
    assert "client-s3cret" not in repr(s)


def test_a_token_command_with_a_password_in_auto() -> None:
    s = settings(
        smtp_username="mailer@example.com",
        smtp_password="p",
        smtp_oauth2_token_command="oauth2l fetch --scope https://mail.google.com/",
    )
    assert s.smtp_auth_mechanism == "auto"


@pytest.mark.parametrize(
    "url", ["https://oauth2.googleapis.com/token", "http://127.0.0.1:8080/token"]
)
def test_token_urls(url: str) -> None:
    settings(
        smtp_username="m",
        smtp_oauth2_token_url=url,
        smtp_oauth2_client_id="a",
        smtp_oauth2_client_secret="b",
    )


@pytest.mark.parametrize("url", ["http://login.example.com/token", "ftp://example.com/t", "x"])
def test_a_token_url_must_be_https(url: str) -> None:
    message = config_error(smtp_oauth2_token_url=url)
    assert "SMTP_OAUTH2_TOKEN_URL: must be an https:// URL" in message


def test_a_token_command_must_split_into_words() -> None:
    message = config_error(smtp_oauth2_token_command="get-token --name 'unterminated")
    assert "SMTP_OAUTH2_TOKEN_COMMAND: cannot be split into a command line" in message


# -- EHLO name --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["mail.example.com", "mx-1.example.org", "[192.0.2.1]", "[IPv6:2001:db8::1]"]
)
def test_ehlo_names(name: str) -> None:
    assert settings(smtp_ehlo_name=name).smtp_ehlo_name == name


@pytest.mark.parametrize(
    "name",
    ["mail example.com", "-mail.example.com", "[300.1.1.1]", "[2001:db8::1]", "[IPv6:192.0.2.1]"],
)
def test_bad_ehlo_names(name: str) -> None:
    assert "SMTP_EHLO_NAME: must be a domain name" in config_error(smtp_ehlo_name=name)
