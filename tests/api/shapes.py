"""The keys each API response object must have, exactly."""

ITEM_KEYS = frozenset(
    {
        "id",
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
        "nextAttemptAt",
        "error",
    }
)
DETAIL_KEYS = ITEM_KEYS | {"replyTo", "text", "html", "headers", "requestId", "deliveryAttempts"}
