"""The worker's metrics: attempts by outcome, emails sent and failed, delivery latency.

``record_delivery`` is called once per recorded attempt (from the worker's
``_log_outcome``), when what became of the email is known. Sandbox emails are left out:
no SMTP server ever sees them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from prometheus_client import Counter, Histogram

from mailroom.emails.states import EmailStatus
from mailroom.metrics.registry import WORKER_REGISTRY
from mailroom.transport.base import Outcome, SendResult

if TYPE_CHECKING:
    from mailroom.emails.delivery import AttemptResult, Recorded

# Why an email failed for good, from its last attempt. A reply's class (5xx: refused;
# 4xx: deferred until the attempts ran out), else: config (Mailroom's own SMTP settings
# are wrong), connection (no reply: refused, lost, TLS), local (refused before it was
# sent, e.g. a message that could not be built), unknown (lost during DATA, interrupted).
ERROR_CLASSES = ("5xx", "4xx", "connection", "config", "local", "unknown")

DELIVERY_ATTEMPTS = Counter(
    "mailroom_delivery_attempts",
    "Delivery attempts by outcome: accepted, transient, permanent, unknown (lost during "
    "DATA), interrupted (the worker stopped)",
    ("outcome",),
    registry=WORKER_REGISTRY,
)
EMAILS_SENT = Counter("mailroom_emails_sent", "Emails delivered", registry=WORKER_REGISTRY)
EMAILS_FAILED = Counter(
    "mailroom_emails_failed",
    "Emails failed for good, by the class of their last error: "
    "5xx, 4xx, connection, config, local, unknown",
    ("error_class",),
    registry=WORKER_REGISTRY,
)
DELIVERY_LATENCY = Histogram(
    "mailroom_delivery_latency_seconds",
    "From an email's acceptance (a scheduled email's send_at) to the end of the attempt "
    "that delivered it, retries included",
    buckets=(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 4 * 3600, 24 * 3600),
    registry=WORKER_REGISTRY,
)
for _outcome in Outcome:
    DELIVERY_ATTEMPTS.labels(_outcome.value)
for _class in ERROR_CLASSES:
    EMAILS_FAILED.labels(_class)


def error_class(result: SendResult) -> str:
    if result.config_error:
        return "config"
    if result.code is not None and 400 <= result.code < 600:
        return f"{result.code // 100}xx"
    if result.outcome is Outcome.TRANSIENT:
        return "connection"
    if result.outcome is Outcome.PERMANENT:
        return "local"
    return "unknown"


def record_delivery(attempt: AttemptResult, recorded: Recorded) -> None:
    if attempt.claimed.email.sandbox:
        return  # never handed to an SMTP server: not a delivery these metrics describe
    result = attempt.result
    DELIVERY_ATTEMPTS.labels(result.outcome.value).inc()
    if not recorded.applied:  # another worker took the email over; it reports the end
        return
    target = recorded.decision.transition.target
    if target is EmailStatus.SENT:
        EMAILS_SENT.inc()
        email = attempt.claimed.email
        due = max(email.created_at, email.send_at) if email.send_at else email.created_at
        DELIVERY_LATENCY.observe(max(0.0, (attempt.finished_at - due).total_seconds()))
    elif target is EmailStatus.FAILED:
        EMAILS_FAILED.labels(error_class(result)).inc()
