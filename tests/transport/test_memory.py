"""MemoryTransport: scripted replies, then acceptance; the reply() helpers."""

from __future__ import annotations

import pytest

from mailroom.transport.base import Envelope, MailTransport, Outcome, SendResult, Stage
from mailroom.transport.memory import MemoryTransport, connection_lost, reply


def envelope(n: int) -> Envelope:
    return Envelope(
        sender="sender@example.com",
        recipients=(f"r{n}@example.com",),
        message=f"Subject: {n}\r\n\r\nbody {n}\r\n".encode(),
    )


async def test_without_a_script_everything_is_accepted() -> None:
    transport = MemoryTransport()
    result = await transport.send(envelope(1))
    assert result == SendResult(
        outcome=Outcome.ACCEPTED,
        code=250,
        enhanced_code="2.0.0",
        message="OK queued",
        stage=Stage.DATA,
        retry_after=None,
    )
    assert transport.attempts == [envelope(1)]
    assert transport.delivered == [envelope(1)]


async def test_scripted_results_come_back_in_order_then_it_accepts() -> None:
    transport = MemoryTransport()
    greylisted = reply(451, "4.7.1 Greylisted, try again in 60 seconds", Stage.RCPT)
    unknown = reply(550, "5.1.1 User unknown", Stage.RCPT)
    lost = connection_lost(Stage.DATA)
    transport.script(greylisted, unknown)
    transport.script(lost)

    results = [await transport.send(envelope(n)) for n in range(5)]

    assert results[:3] == [greylisted, unknown, lost]
    assert [r.outcome for r in results] == [
        Outcome.TRANSIENT,
        Outcome.PERMANENT,
        Outcome.UNKNOWN,
        Outcome.ACCEPTED,
        Outcome.ACCEPTED,
    ]
    assert results[3].code == 250


async def test_attempts_record_everything_delivered_only_accepted() -> None:
    transport = MemoryTransport()
    accepted_with_refusal = reply(250, "2.0.0 OK")
    transport.script(reply(421, "4.4.2 Timeout"), accepted_with_refusal, reply(554, "5.7.1 No"))
    envelopes = [envelope(n) for n in range(4)]
    for item in envelopes:
        await transport.send(item)
    assert transport.attempts == envelopes
    assert transport.delivered == [envelopes[1], envelopes[3]]


async def test_same_envelope_twice_is_recorded_twice() -> None:
    transport = MemoryTransport()
    transport.script(reply(450, "busy"))
    await transport.send(envelope(1))
    await transport.send(envelope(1))
    assert transport.attempts == [envelope(1), envelope(1)]
    assert transport.delivered == [envelope(1)]


async def test_aclose_marks_closed() -> None:
    transport = MemoryTransport()
    assert transport.closed is False
    await transport.aclose()
    assert transport.closed is True


def test_memory_transport_satisfies_the_protocol() -> None:
    transport: MailTransport = MemoryTransport()
    assert callable(transport.send)
    assert callable(transport.aclose)


# -- reply() ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "stage", "outcome"),
    [
        (250, Stage.DATA, Outcome.ACCEPTED),
        (421, Stage.CONNECT, Outcome.TRANSIENT),
        (451, Stage.DATA, Outcome.TRANSIENT),
        (550, Stage.RCPT, Outcome.PERMANENT),
        (552, Stage.RCPT, Outcome.TRANSIENT),
        (552, Stage.DATA, Outcome.PERMANENT),
        (554, Stage.CONNECT, Outcome.TRANSIENT),
        (535, Stage.MAIL, Outcome.TRANSIENT),
        (354, Stage.DATA, Outcome.TRANSIENT),
    ],
)
def test_reply_classifies_like_the_smtp_transport(
    code: int, stage: Stage, outcome: Outcome
) -> None:
    result = reply(code, "x", stage)
    assert result.outcome is outcome
    assert result.code == code
    assert result.stage is stage


def test_reply_defaults_to_the_data_stage() -> None:
    result = reply(552)
    assert result.stage is Stage.DATA
    assert result.outcome is Outcome.PERMANENT
    assert result.message == ""
    assert result.enhanced_code is None
    assert result.retry_after is None
    assert result.refused == ()


def test_reply_splits_enhanced_code_and_reads_retry_hint() -> None:
    result = reply(450, "4.2.0 Mailbox busy, retry in 5 minutes", Stage.RCPT)
    assert result == SendResult(
        outcome=Outcome.TRANSIENT,
        code=450,
        enhanced_code="4.2.0",
        message="Mailbox busy, retry in 5 minutes",
        stage=Stage.RCPT,
        retry_after=300.0,
    )


@pytest.mark.parametrize(
    ("code", "stage"),
    [
        (535, Stage.MAIL),
        (530, Stage.MAIL),
        (534, Stage.RCPT),
        (538, Stage.DATA),
    ],
)
def test_reply_flags_config_errors_like_the_smtp_transport(code: int, stage: Stage) -> None:
    # The authentication codes mean Mailroom's settings wherever they come; reply()
    # promises the same result as SmtpTransport.
    assert reply(code, "5.7.8 Authentication credentials invalid", stage).config_error is True


@pytest.mark.parametrize(
    ("code", "stage"),
    [(550, Stage.RCPT), (451, Stage.DATA), (421, Stage.CONNECT), (554, Stage.CONNECT)],
)
def test_reply_does_not_flag_ordinary_replies(code: int, stage: Stage) -> None:
    # A 421 or 554 greeting is the server shedding load or refusing us, not a setting.
    assert reply(code, "no", stage).config_error is False


# -- connection_lost() --------------------------------------------------------------------


@pytest.mark.parametrize("stage", [Stage.CONNECT, Stage.MAIL, Stage.RCPT])
def test_connection_lost_before_data_is_transient(stage: Stage) -> None:
    result = connection_lost(stage, "reset by peer")
    assert result == SendResult(
        outcome=Outcome.TRANSIENT, code=None, message="reset by peer", stage=stage
    )


def test_connection_lost_during_data_is_unknown() -> None:
    result = connection_lost(Stage.DATA)
    assert result.outcome is Outcome.UNKNOWN
    assert result.code is None
    assert result.message == "Connection refused"


def test_connection_lost_defaults() -> None:
    result = connection_lost()
    assert result.stage is Stage.CONNECT
    assert result.outcome is Outcome.TRANSIENT
    assert result.message == "Connection refused"
