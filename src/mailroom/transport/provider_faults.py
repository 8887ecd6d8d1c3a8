"""Whose fault an answer is: the provider's (fail over), a throttle (slow down), or the email's.

Provider-level (the circuit breaker opens, the next attempt goes elsewhere at once):
no connection, a timeout or TLS or AUTH failure before MAIL, a 421 greeting (all of
``Stage.CONNECT``); a 5.7.x refusal of MAIL FROM (this sender is not allowed at this
provider, e.g. an unverified identity at SES); ``MAIL_4XX_IN_A_ROW`` temporary
refusals of MAIL FROM in a row. Throttling: 454, or a 4xx (421, 450, 451, 452, or a
4.7.x code) whose text speaks of a rate or a limit. Everything else is the email's:
a refusal at RCPT is about one address and is never retried elsewhere.
"""

from __future__ import annotations

import re
from enum import StrEnum

from mailroom.transport.base import Outcome, SendResult, Stage

MAIL_4XX_IN_A_ROW = 3
_RATE_TEXT = re.compile(
    r"rate|throttl|too many|too fast|slow down|limit|quota|exceed", re.IGNORECASE
)


class Fault(StrEnum):
    NONE = "none"  # delivered, or the email's own answer
    PROVIDER = "provider"
    THROTTLE = "throttle"
    MAIL_4XX = "mail_4xx"  # a provider fault once MAIL_4XX_IN_A_ROW come in a row


def fault_of(result: SendResult) -> Fault:
    if result.outcome in (Outcome.ACCEPTED, Outcome.PACED, Outcome.INTERRUPTED):
        return Fault.NONE
    code, stage = result.code, result.stage
    if code is not None and 400 <= code < 500 and is_throttle(result):
        return Fault.THROTTLE
    if stage is Stage.CONNECT or result.config_error:
        return Fault.PROVIDER
    if stage is Stage.MAIL and code is not None:
        if 500 <= code < 600 and (result.enhanced_code or "").startswith("5.7."):
            return Fault.PROVIDER
        if 400 <= code < 500:
            return Fault.MAIL_4XX
    return Fault.NONE


def is_throttle(result: SendResult) -> bool:
    code = result.code or 0
    if code == 454 and result.stage is not Stage.CONNECT:
        # At STARTTLS or AUTH a 454 means "TLS or AUTH not available now": a provider fault.
        return True
    if code in (421, 450, 451, 452) or (result.enhanced_code or "").startswith("4.7."):
        return _RATE_TEXT.search(result.message) is not None
    return False
