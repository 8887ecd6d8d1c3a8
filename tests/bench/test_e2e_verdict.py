"""`make bench` fails (a problem, so a non-zero exit) when an e2e run did not deliver all."""

from __future__ import annotations

from bench.__main__ import Session, e2e_verdict
from bench.e2e import E2EResult


def _result(
    *,
    sent: int = 0,
    failed: int = 0,
    stored: int = 0,
    complete: bool = False,
    skipped: str | None = None,
) -> E2EResult:
    return E2EResult(
        mode="batch",
        workers=1,
        emails=1000,
        sent=sent,
        failed=failed,
        stored=stored,
        complete=complete,
        skipped=skipped,
    )


def test_a_run_that_delivered_everything_is_no_problem() -> None:
    session = Session()
    e2e_verdict(session, _result(sent=1000, stored=1000, complete=True))
    assert session.problems == []


def test_a_run_cut_off_by_the_deadline_is_a_problem() -> None:
    session = Session()
    e2e_verdict(session, _result(sent=990, stored=1000, complete=False))
    assert session.problems == [
        "e2e batch, 1 worker: incomplete: 990 of 1,000 emails sent by the deadline"
    ]


def test_failed_emails_are_a_problem() -> None:
    session = Session()
    e2e_verdict(session, _result(sent=998, failed=2, stored=1000, complete=True))
    assert len(session.problems) == 1
    assert "998 of 1,000" in session.problems[0] and "2 failed" in session.problems[0]


def test_a_skipped_run_is_not_a_delivery_problem() -> None:
    session = Session()
    e2e_verdict(session, _result(skipped="no wrk"))
    assert session.problems == []
