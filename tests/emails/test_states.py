"""The email state machine: which status may follow which, and nothing else."""

from __future__ import annotations

import itertools

import pytest

from mailroom.emails.states import (
    BOUNCE,
    CANCEL,
    CLAIM,
    DEFER,
    DELIVER,
    DISPATCHABLE_STATUSES,
    FAIL,
    FINAL_STATUSES,
    PACE,
    RECLAIMABLE_STATUS,
    RETRY,
    TRANSITIONS,
    EmailStatus,
    Transition,
    allowed,
)

S = EmailStatus

ALLOWED_MOVES = frozenset(
    {
        (S.QUEUED, S.SENDING),
        (S.RETRYING, S.SENDING),
        (S.SENDING, S.SENDING),  # reclaim after an expired lease
        (S.SENDING, S.SENT),
        (S.SENDING, S.RETRYING),
        (S.SENDING, S.FAILED),
        (S.SENDING, S.QUEUED),  # paced by a provider's limit: no attempt made
        (S.SCHEDULED, S.SENDING),
        (S.FAILED, S.QUEUED),  # a manual retry
        (S.SCHEDULED, S.CANCELLED),
        (S.QUEUED, S.CANCELLED),
        (S.RETRYING, S.CANCELLED),
        (S.SENT, S.BOUNCED),  # every recipient hard-bounced, reported after sending
    }
)
ALL_PAIRS = list(itertools.product(EmailStatus, EmailStatus))


def test_status_values_are_the_documented_strings() -> None:
    assert [s.value for s in EmailStatus] == [
        "queued",
        "sending",
        "retrying",
        "sent",
        "failed",
        "scheduled",
        "cancelled",
        "suppressed",
        "bounced",
    ]
    assert EmailStatus("sent") is S.SENT
    assert str(S.RETRYING) == "retrying"


@pytest.mark.parametrize(("source", "target"), sorted(ALLOWED_MOVES))
def test_allowed_moves(source: EmailStatus, target: EmailStatus) -> None:
    assert allowed(source, target) is True


@pytest.mark.parametrize(
    ("source", "target"), [pair for pair in ALL_PAIRS if pair not in ALLOWED_MOVES]
)
def test_every_other_move_is_refused(source: EmailStatus, target: EmailStatus) -> None:
    assert allowed(source, target) is False


def test_exactly_the_documented_moves_are_allowed() -> None:
    assert {pair for pair in ALL_PAIRS if allowed(*pair)} == ALLOWED_MOVES


@pytest.mark.parametrize("final", [S.CANCELLED, S.SUPPRESSED, S.BOUNCED])
def test_finished_emails_never_move(final: EmailStatus) -> None:
    assert [target for target in EmailStatus if allowed(final, target)] == []
    for transition in TRANSITIONS:
        assert final not in transition.sources


def test_a_failed_email_moves_only_when_someone_retries_it() -> None:
    assert [target for target in EmailStatus if allowed(S.FAILED, target)] == [S.QUEUED]
    assert [t for t in TRANSITIONS if S.FAILED in t.sources] == [RETRY]


def test_an_email_being_sent_cannot_be_cancelled() -> None:
    assert S.SENDING not in CANCEL.sources


@pytest.mark.parametrize(
    ("source", "target"),
    [
        (S.QUEUED, S.SENT),
        (S.QUEUED, S.FAILED),
        (S.QUEUED, S.RETRYING),
        (S.QUEUED, S.QUEUED),
        (S.RETRYING, S.SENT),
        (S.RETRYING, S.FAILED),
        (S.RETRYING, S.RETRYING),
        (S.SENT, S.SENDING),
        (S.FAILED, S.RETRYING),
        (S.SENT, S.SENT),
        (S.FAILED, S.FAILED),
    ],
)
def test_notable_forbidden_moves(source: EmailStatus, target: EmailStatus) -> None:
    assert not allowed(source, target)


def test_is_final() -> None:
    final = {S.SENT, S.FAILED, S.CANCELLED, S.SUPPRESSED, S.BOUNCED}
    assert {s for s in EmailStatus if s.is_final} == final
    assert frozenset(final) == FINAL_STATUSES


def test_dispatchable_statuses() -> None:
    assert frozenset({S.QUEUED, S.RETRYING, S.SCHEDULED}) == DISPATCHABLE_STATUSES
    assert not DISPATCHABLE_STATUSES & FINAL_STATUSES


def test_reclaimable_status_is_sending() -> None:
    assert RECLAIMABLE_STATUS is S.SENDING


@pytest.mark.parametrize(
    ("transition", "name", "sources", "target"),
    [
        (CLAIM, "claim", {S.QUEUED, S.RETRYING, S.SCHEDULED}, S.SENDING),
        (DELIVER, "deliver", {S.SENDING}, S.SENT),
        (DEFER, "defer", {S.SENDING}, S.RETRYING),
        (FAIL, "fail", {S.SENDING}, S.FAILED),
        (RETRY, "retry", {S.FAILED}, S.QUEUED),
        (CANCEL, "cancel", {S.SCHEDULED, S.QUEUED, S.RETRYING}, S.CANCELLED),
        (BOUNCE, "bounce", {S.SENT}, S.BOUNCED),
    ],
)
def test_transition_definitions(
    transition: Transition, name: str, sources: set[EmailStatus], target: EmailStatus
) -> None:
    assert transition.name == name
    assert transition.sources == frozenset(sources)
    assert transition.target is target


def test_transitions_tuple() -> None:
    assert TRANSITIONS == (CLAIM, DELIVER, DEFER, FAIL, PACE, RETRY, CANCEL, BOUNCE)
    assert len({t.name for t in TRANSITIONS}) == len(TRANSITIONS)


def test_claim_does_not_list_sending_as_a_source() -> None:
    # Reclaiming a `sending` email depends on its lease, which the repository checks;
    # the status-only CLAIM transition must not include it.
    assert S.SENDING not in CLAIM.sources


def test_transitions_are_immutable() -> None:
    with pytest.raises(AttributeError):
        setattr(CLAIM, "target", S.SENT)  # noqa: B010
