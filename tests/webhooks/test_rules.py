"""The pure rules: signatures, the retry schedule, Retry-After, URL and address checks."""

from __future__ import annotations

import ipaddress
import random
from datetime import UTC, datetime

import pytest
from standardwebhooks.webhooks import Webhook

from mailroom.setting_checks import parse_retry_schedule
from mailroom.settings import ConfigurationError, load_settings
from mailroom.webhooks import signing
from mailroom.webhooks.schedule import next_wait, parse_retry_after
from mailroom.webhooks.ssrf import RefusedDestination, check_url, refused_address
from mailroom.worker.webhooks import job_shape


def test_signatures_verify_with_the_standard_webhooks_package() -> None:
    secret = signing.new_secret()
    body = b'{"type":"email.sent","data":{"emailId":"x"}}'
    now = int(datetime.now(UTC).timestamp())
    headers = signing.headers([secret], "evt_1", now, body)
    assert Webhook(secret).verify(body, headers) == {"type": "email.sent", "data": {"emailId": "x"}}
    # The library's own signature of the same content is ours.
    assert (
        Webhook(secret).sign("evt_1", datetime.fromtimestamp(now, UTC), body.decode())
        == (headers["webhook-signature"])
    )
    with pytest.raises(ValueError, match="whsec_"):
        signing.sign("nope", "evt_1", now, body)


def test_the_schedule_with_jitter_and_its_end() -> None:
    rng = random.Random(1)
    schedule = (5.0, 300.0, 1800.0)
    waits = [next_wait(n, schedule, rng=rng) for n in (1, 2, 3)]
    for wait, step in zip(waits, schedule, strict=True):
        assert wait is not None and 0.9 * step <= wait <= 1.1 * step
    assert next_wait(4, schedule, rng=rng) is None
    assert next_wait(0, schedule, rng=rng) is None
    # Retry-After pushes the wait later, never past the longest step, never sooner.
    assert next_wait(1, schedule, rng=rng, retry_after=100) == 100
    assert next_wait(1, schedule, rng=rng, retry_after=10_000) == 1800
    wait = next_wait(2, schedule, rng=rng, retry_after=1)
    assert wait is not None and wait >= 270


def test_retry_after_forms() -> None:
    now = datetime(2026, 12, 4, 12, 0, 0, tzinfo=UTC)
    assert parse_retry_after("120") == 120
    assert parse_retry_after("Fri, 04 Dec 2026 12:01:00 GMT", now=now) == 60
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None


def test_the_default_schedule_is_about_three_days() -> None:
    delays = load_settings(_env_file=None).webhook_retry_delays
    assert delays == (5, 300, 1800, 7200, 18000, 36000, 50400, 72000, 86400)
    assert 2.9 < sum(delays) / 86_400 < 3.2


@pytest.mark.parametrize("value", ["", "5,x", "0", "-1", "5,,700000"])
def test_a_bad_schedule_fails_at_start(value: str) -> None:
    with pytest.raises(ValueError, match=r"wait|seconds"):
        parse_retry_schedule(value)
    with pytest.raises(ConfigurationError, match="WEBHOOK_RETRY_SCHEDULE"):
        load_settings(_env_file=None, webhook_retry_schedule=value)


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "10.0.0.1",
        "172.16.0.1",
        "192.168.1.1",
        "169.254.169.254",
        "::1",
        "fe80::1",
        "fd00:ec2::254",
        "::ffff:127.0.0.1",
        "100.64.0.1",
        "0.0.0.0",
    ],
)
def test_internal_addresses_are_refused(address: str) -> None:
    assert refused_address(ipaddress.ip_address(address), allow_private=False) is not None


def test_public_addresses_pass_and_private_ones_when_allowed() -> None:
    assert refused_address(ipaddress.ip_address("93.184.216.34"), allow_private=False) is None
    assert refused_address(ipaddress.ip_address("10.0.0.1"), allow_private=True) is None
    assert refused_address(ipaddress.ip_address("0.0.0.0"), allow_private=True) is not None


def test_url_forms() -> None:
    assert check_url("https://a.example.com/x?y=1", allow_http=False, allow_private=False)
    for bad in ("https://a.example.com:0/", "https:///x", "https://a.example.com/ x", "mailto:a@b"):
        with pytest.raises(RefusedDestination):
            check_url(bad, allow_http=True, allow_private=False)
    assert check_url("http://intranet/x", allow_http=True, allow_private=True)
    with pytest.raises(RefusedDestination, match="internal"):
        check_url("https://intranet/x", allow_http=False, allow_private=False)


@pytest.mark.parametrize(
    ("concurrency", "shape"),
    [(200, (100, 2)), (250, (100, 2)), (100, (100, 1)), (50, (50, 1)), (1, (1, 1))],
)
def test_jobs_in_flight_never_hold_more_deliveries_than_the_pool_has_connections(
    concurrency: int, shape: tuple[int, int]
) -> None:
    size, jobs = job_shape(concurrency)
    assert (size, jobs) == shape
    assert size * jobs <= concurrency
