"""The shapes API responses must have, exactly."""

from typing import Any

import httpx

ITEM_KEYS = frozenset(
    {
        "id",
        "project",
        "from",
        "to",
        "cc",
        "bcc",
        "subject",
        "status",
        "attempts",
        "messageId",
        "createdAt",
        "sentAt",
        "failedAt",
        "cancelledAt",
        "sendAt",
        "nextAttemptAt",
        "sandbox",
        "error",
        "bounced",
        "complained",
        "suppressed",
    }
)
DETAIL_KEYS = ITEM_KEYS | {
    "recipients",
    "replyTo",
    "text",
    "html",
    "headers",
    "requestId",
    "attachments",
    "deliveryAttempts",
    "feedback",
    "events",
}


def assert_error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    """The one error shape: {"error": {"code", "message", "details"}} (and "detailsTotal" when
    details were cut to the first 20), and nothing internal."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert set(body) == {"error"}
    error: dict[str, Any] = body["error"]
    assert set(error) - {"detailsTotal"} == {"code", "message", "details"}
    assert error["code"] == code
    assert isinstance(error["message"], str) and error["message"]
    assert "Traceback" not in response.text and 'File "' not in response.text
    return error
