"""The aiohttp sender against real servers: failures come back as outcomes with a clear error."""

from __future__ import annotations

import pytest

from mailroom.webhooks.sender import CheckedResolver, HttpSender
from mailroom.webhooks.ssrf import RefusedDestination
from tests.support.webhook_receiver import Reply, WebhookReceiver


def _sender(**overrides: object) -> HttpSender:
    options: dict[str, object] = {"timeout": 2.0, "allow_http": True, "allow_private": True}
    options.update(overrides)
    return HttpSender(**options)  # type: ignore[arg-type]


async def test_a_tls_error_is_a_failed_attempt(receiver: WebhookReceiver) -> None:
    sender = _sender()
    try:
        # The receiver speaks plain HTTP: the TLS handshake fails.
        outcome = await sender.send(receiver.url.replace("http:", "https:"), {}, b"{}")
    finally:
        await sender.aclose()
    assert outcome.status_code is None and not outcome.succeeded
    assert outcome.error is not None and outcome.error.startswith("TLS error")


async def test_a_name_that_does_not_resolve_is_a_failed_attempt() -> None:
    sender = _sender()
    try:
        outcome = await sender.send("https://hooks.mailroom.invalid/x", {}, b"{}")
    finally:
        await sender.aclose()
    assert outcome.status_code is None
    assert outcome.error is not None and "resolve" in outcome.error


async def test_the_request_goes_to_the_checked_address_with_the_url_s_host(
    receiver: WebhookReceiver,
) -> None:
    receiver.behaviour = lambda _: Reply(status=204, body=b"")
    sender = _sender()
    try:
        url = receiver.url.replace("127.0.0.1", "localhost")
        outcome = await sender.send(url, {"webhook-id": "msg_1"}, b'{"a":1}')
    finally:
        await sender.aclose()
    assert outcome.succeeded and outcome.body is None
    [request] = receiver.received
    assert request.headers["host"] == f"localhost:{receiver.port}"
    assert request.headers["webhook-id"] == "msg_1" and request.body == b'{"a":1}'
    assert request.headers["user-agent"].startswith("Mailroom-Webhooks")


async def test_http_is_refused_at_send_time_unless_allowed(receiver: WebhookReceiver) -> None:
    sender = _sender(allow_http=False)
    try:
        outcome = await sender.send(receiver.url, {}, b"{}")
    finally:
        await sender.aclose()
    assert outcome.error is not None and outcome.error.startswith("Refused destination")
    assert receiver.received == []


async def test_a_name_resolving_to_an_internal_address_is_refused_when_connecting() -> None:
    # "localhost" passes no URL check here (the resolver is asked directly), as a public
    # name that has been pointed inside the network would: the connection is refused.
    strict, lenient = CheckedResolver(allow_private=False), CheckedResolver(allow_private=True)
    try:
        with pytest.raises(RefusedDestination, match="loopback"):
            await strict.resolve("localhost", 443)
        allowed = await lenient.resolve("localhost", 443)
    finally:
        await strict.close()
        await lenient.close()
    assert {r["host"] for r in allowed} <= {"127.0.0.1", "::1"}
