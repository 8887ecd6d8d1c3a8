"""Reading SMTP replies: reply classes, enhanced status codes and retry hints."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailroom.transport.base import Outcome, RecipientRefusal, SendResult, Stage
from mailroom.transport.replies import (
    accepted,
    classify,
    classify_refusals,
    is_config_error,
    refusal,
    reply_result,
    retry_after_hint,
    split_enhanced,
    unexpected_reply,
)

ACCEPTED, TRANSIENT, PERMANENT = Outcome.ACCEPTED, Outcome.TRANSIENT, Outcome.PERMANENT
LATER_STAGES = [Stage.MAIL, Stage.RCPT, Stage.DATA]

# -- classify ---------------------------------------------------------------------------


@pytest.mark.parametrize("stage", list(Stage))
@pytest.mark.parametrize("code", [200, 220, 250, 251, 252, 299])
def test_a_2xx_that_ends_an_attempt_is_never_acceptance(code: int, stage: Stage) -> None:
    # A 250 greeting, or a 250 to STARTTLS, AUTH or DATA: nothing was handed over. Only
    # the reply to the final dot accepts a message, and that goes through accepted().
    assert classify(code, stage) is TRANSIENT


@pytest.mark.parametrize("stage", list(Stage))
@pytest.mark.parametrize("code", [400, 421, 450, 451, 452, 454, 499])
def test_4xx_is_transient_at_every_stage(code: int, stage: Stage) -> None:
    assert classify(code, stage) is TRANSIENT


@pytest.mark.parametrize("stage", LATER_STAGES)
@pytest.mark.parametrize("code", [500, 501, 503, 550, 551, 553, 554, 599])
def test_5xx_after_connect_is_permanent(code: int, stage: Stage) -> None:
    assert classify(code, stage) is PERMANENT


def test_552_too_many_recipients_at_rcpt_is_transient() -> None:
    assert classify(552, Stage.RCPT) is TRANSIENT


@pytest.mark.parametrize("stage", [Stage.MAIL, Stage.DATA])
def test_552_storage_exceeded_after_data_or_mail_is_permanent(stage: Stage) -> None:
    assert classify(552, stage) is PERMANENT


@pytest.mark.parametrize("stage", list(Stage))
@pytest.mark.parametrize("code", [530, 534, 535, 538])
def test_config_codes_are_transient_at_every_stage(code: int, stage: Stage) -> None:
    assert classify(code, stage) is TRANSIENT


@pytest.mark.parametrize("code", [500, 502, 550, 552, 554, 599])
def test_any_5xx_at_connect_is_transient(code: int) -> None:
    assert classify(code, Stage.CONNECT) is TRANSIENT


@pytest.mark.parametrize("stage", list(Stage))
@pytest.mark.parametrize("code", [354, 334, 100, 199, 300, 399, 600, 999, 0])
def test_odd_codes_are_transient(code: int, stage: Stage) -> None:
    assert classify(code, stage) is TRANSIENT


@given(code=st.integers(min_value=0, max_value=999), stage=st.sampled_from(list(Stage)))
def test_classify_matches_the_rules(code: int, stage: Stage) -> None:
    if (
        500 <= code < 600
        and stage is not Stage.CONNECT
        and code not in {530, 534, 535, 538}
        and not (code == 552 and stage is Stage.RCPT)
    ):
        expected = PERMANENT
    else:
        expected = TRANSIENT
    assert classify(code, stage) is expected


@pytest.mark.parametrize(
    ("code", "expected"),
    [(530, True), (534, True), (535, True), (538, True), (550, False), (421, False), (250, False)],
)
def test_is_config_error(code: int, expected: bool) -> None:
    assert is_config_error(code) is expected


# -- split_enhanced -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ("5.1.1 User unknown", ("5.1.1", "User unknown")),
        ("4.7.1   Greylisted, come back later", ("4.7.1", "Greylisted, come back later")),
        ("2.0.0 Ok: queued as ABC123", ("2.0.0", "Ok: queued as ABC123")),
        ("  5.7.26 Unauthenticated email", ("5.7.26", "Unauthenticated email")),
        ("4.123.456 odd but valid", ("4.123.456", "odd but valid")),
        ("5.1.1", ("5.1.1", "")),
        ("5.1.1\nsecond line", ("5.1.1", "second line")),
        ("User unknown", (None, "User unknown")),
        ("  padded text  ", (None, "padded text")),
        ("", (None, "")),
        # Not enhanced codes: wrong class, extra part, no separating space, not at the front.
        ("3.1.1 Not a class", (None, "3.1.1 Not a class")),
        ("5.1 Too short", (None, "5.1 Too short")),
        ("5.1.1.1 Too long", (None, "5.1.1.1 Too long")),
        ("5.1.1User", (None, "5.1.1User")),
        ("5.1234.1 big subject", (None, "5.1234.1 big subject")),
        ("User 5.1.1 unknown", (None, "User 5.1.1 unknown")),
    ],
)
def test_split_enhanced(message: str, expected: tuple[str | None, str]) -> None:
    assert split_enhanced(message) == expected


# -- retry_after_hint ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("message", "seconds"),
    [
        ("try again in 60 seconds", 60.0),
        ("Greylisted, please try again in 300 seconds", 300.0),
        ("Try again later in 2 minutes", 120.0),
        ("try in 1 second", 1.0),
        ("retry in 5 minutes", 300.0),
        ("RETRY IN 5 MINUTES", 300.0),
        ("Rate limited; retry in 10 mins", 600.0),
        ("retry in 10 min", 600.0),
        ("retry in 30s", 30.0),
        ("retry in 30 secs", 30.0),
        ("retry in 2m", 120.0),
        ("retry after 1 hour", 3600.0),
        ("please wait 2 hours", 7200.0),
        ("wait 3h", 10800.0),
        ("after 45 sec", 45.0),
    ],
)
def test_retry_after_hint_parses(message: str, seconds: float) -> None:
    assert retry_after_hint(message) == seconds


@pytest.mark.parametrize(
    "message",
    [
        "",
        "Mailbox full",
        "try again later",
        "try again in a minute",
        "retry in 5 days",
        "retry in 5 minutesx",
        "in 60 seconds",
        "retry in 1234567 seconds",  # more than six digits is not a hint we trust
    ],
)
def test_retry_after_hint_absent(message: str) -> None:
    assert retry_after_hint(message) is None


def test_retry_after_hint_returns_float() -> None:
    hint = retry_after_hint("try again in 60 seconds")
    assert isinstance(hint, float)


# -- refusals -----------------------------------------------------------------------------


def test_refusal_splits_the_enhanced_code() -> None:
    assert refusal("a@example.com", 550, "5.1.1 <a@example.com>: User unknown") == (
        RecipientRefusal(
            recipient="a@example.com",
            code=550,
            enhanced_code="5.1.1",
            message="<a@example.com>: User unknown",
        )
    )


def test_refusal_without_enhanced_code() -> None:
    assert refusal("b@example.com", 450, "Mailbox busy") == RecipientRefusal(
        recipient="b@example.com", code=450, enhanced_code=None, message="Mailbox busy"
    )


def _refused(*codes: int) -> tuple[RecipientRefusal, ...]:
    return tuple(refusal(f"r{i}@example.com", code, "no") for i, code in enumerate(codes))


@pytest.mark.parametrize(
    ("codes", "expected"),
    [
        ((550,), PERMANENT),
        ((550, 551, 553, 554), PERMANENT),
        ((450,), TRANSIENT),
        ((550, 450), TRANSIENT),
        ((451, 550, 553), TRANSIENT),
        ((552,), TRANSIENT),  # too many recipients: try the rest later
        ((550, 552), TRANSIENT),
        ((535,), TRANSIENT),
        ((550, 530), TRANSIENT),
    ],
)
def test_classify_refusals(codes: tuple[int, ...], expected: Outcome) -> None:
    assert classify_refusals(_refused(*codes)) is expected


# -- reply_result -------------------------------------------------------------------------


def test_reply_result_reads_the_whole_reply() -> None:
    assert reply_result(451, "4.7.1 Greylisted, try again in 60 seconds", Stage.RCPT) == (
        SendResult(
            outcome=TRANSIENT,
            code=451,
            enhanced_code="4.7.1",
            message="Greylisted, try again in 60 seconds",
            stage=Stage.RCPT,
            retry_after=60.0,
            config_error=False,
        )
    )


def test_reply_result_permanent() -> None:
    result = reply_result(550, "5.1.1 User unknown", Stage.DATA)
    assert (result.outcome, result.enhanced_code, result.message) == (
        PERMANENT,
        "5.1.1",
        "User unknown",
    )
    assert result.retry_after is None
    assert result.config_error is False
    assert result.refused == ()


@pytest.mark.parametrize(
    ("code", "stage", "config_error"),
    [
        (535, Stage.MAIL, True),
        (530, Stage.MAIL, True),
        (538, Stage.RCPT, True),
        (534, Stage.DATA, True),
        # A 421 or 554 greeting is load or policy, not Mailroom's settings.
        (421, Stage.CONNECT, False),
        (554, Stage.CONNECT, False),
        (421, Stage.MAIL, False),
        (550, Stage.RCPT, False),
        (250, Stage.DATA, False),
    ],
)
def test_reply_result_flags_configuration_faults(
    code: int, stage: Stage, config_error: bool
) -> None:
    result = reply_result(code, "text", stage)
    assert result.config_error is config_error
    assert result.outcome is classify(code, stage)


def test_reply_result_can_be_told_it_is_a_configuration_fault() -> None:
    # The connection set-up says so for AUTH and TLS refusals with other codes (504).
    result = reply_result(
        504, "5.5.4 Unrecognized authentication type", Stage.CONNECT, config_error=True
    )
    assert (result.outcome, result.config_error) == (TRANSIENT, True)


# -- accepted and unexpected replies ---------------------------------------------------------


def test_accepted_is_the_final_dots_2xx() -> None:
    refused = (refusal("b@example.com", 550, "5.1.1 No such user"),)
    assert accepted(250, "2.0.0 Ok: queued as 12", refused) == SendResult(
        outcome=ACCEPTED,
        code=250,
        enhanced_code="2.0.0",
        message="Ok: queued as 12",
        stage=Stage.DATA,
        refused=refused,
    )


def test_an_unexpected_2xx_is_transient_and_says_what_was_due() -> None:
    result = unexpected_reply(250, "2.0.0 Ok", Stage.DATA, command="DATA", expected="354")
    assert (result.outcome, result.code, result.stage, result.config_error) == (
        TRANSIENT,
        250,
        Stage.DATA,
        False,
    )
    assert result.message == "the server answered DATA with 250 where 354 was due: Ok"
