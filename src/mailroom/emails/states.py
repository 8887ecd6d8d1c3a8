"""The email state machine: the only place that says which status may follow which.

    scheduled ──claim (once due)──┐
                                  ▼
    queued ──────claim──────▶ sending ──deliver──▶ sent
                                │ ▲
                          defer │ │ claim
                                ▼ │
                              retrying
    sending ──fail──▶ failed          (permanent reply, or attempts exhausted)
    sending ──pace──▶ queued/retrying (a provider's limit: no attempt made, claim undone)
    sending ──claim─▶ sending         (only once the previous claim's lease expired)
    failed ──retry──▶ queued          (POST /emails/{id}/retry, POST /emails/requeue)
    scheduled, queued, retrying ──cancel──▶ cancelled   (POST /emails/{id}/cancel)
    sent ──bounce──▶ bounced          (every recipient hard-bounced, as the provider or a DSN
                                       reported later; see mailroom.feedback)
    suppressed                        (stored so: every recipient is on the suppression list;
                                       never dispatched, never sent)

The repository turns each transition into one guarded ``UPDATE … WHERE status IN
(sources) RETURNING``, so a duplicate or late job can never move a finished email.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class EmailStatus(StrEnum):
    QUEUED = "queued"
    SENDING = "sending"
    RETRYING = "retrying"
    SENT = "sent"
    FAILED = "failed"
    SCHEDULED = "scheduled"
    CANCELLED = "cancelled"
    SUPPRESSED = "suppressed"
    BOUNCED = "bounced"

    @property
    def is_final(self) -> bool:
        return self in FINAL_STATUSES


# No job will ever move these again (a failed email moves only when someone retries it).
FINAL_STATUSES = frozenset(
    {
        EmailStatus.SENT,
        EmailStatus.FAILED,
        EmailStatus.CANCELLED,
        EmailStatus.SUPPRESSED,
        EmailStatus.BOUNCED,
    }
)
# Waiting for a job: a sweeper may find one here when its dispatch was lost.
DISPATCHABLE_STATUSES = frozenset({EmailStatus.QUEUED, EmailStatus.RETRYING, EmailStatus.SCHEDULED})


@dataclass(frozen=True)
class Transition:
    name: str
    sources: frozenset[EmailStatus]
    target: EmailStatus


CLAIM = Transition("claim", DISPATCHABLE_STATUSES, EmailStatus.SENDING)
# A claim may also take over a ``sending`` email whose lease has expired; the
# repository adds that condition, since it depends on time rather than status.
RECLAIMABLE_STATUS = EmailStatus.SENDING
DELIVER = Transition("deliver", frozenset({EmailStatus.SENDING}), EmailStatus.SENT)
DEFER = Transition("defer", frozenset({EmailStatus.SENDING}), EmailStatus.RETRYING)
FAIL = Transition("fail", frozenset({EmailStatus.SENDING}), EmailStatus.FAILED)
# Back to where it was (queued, or retrying after earlier attempts) with no attempt made;
# its target here is the first-attempt case, the repository picks retrying otherwise.
PACE = Transition("pace", frozenset({EmailStatus.SENDING}), EmailStatus.QUEUED)
RETRY = Transition("retry", frozenset({EmailStatus.FAILED}), EmailStatus.QUEUED)
# Not `sending`: the server may be receiving it right now.
CANCEL = Transition("cancel", DISPATCHABLE_STATUSES, EmailStatus.CANCELLED)
# A relay said 250, then reported that every recipient's mailbox does not exist.
BOUNCE = Transition("bounce", frozenset({EmailStatus.SENT}), EmailStatus.BOUNCED)

TRANSITIONS: tuple[Transition, ...] = (CLAIM, DELIVER, DEFER, FAIL, PACE, RETRY, CANCEL, BOUNCE)


def allowed(source: EmailStatus, target: EmailStatus) -> bool:
    """Whether any transition moves an email from ``source`` to ``target``."""
    if source is RECLAIMABLE_STATUS and target is EmailStatus.SENDING:
        return True
    return any(t.target is target and source in t.sources for t in TRANSITIONS)
