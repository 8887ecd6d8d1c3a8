"""The verdict on one scenario: what was lost, stuck, duplicated or refused, against its bounds.

Kept apart from running the scenario so that the rules can be checked on fabricated
results (tests/chaos): a chaos run that cannot fail proves nothing.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field

from chaos.checks import TERMINAL, Row
from chaos.load import LoadResult
from chaos.scenarios import FaultLog, Scenario


@dataclass
class Outcome:
    scenario: str
    emails: int
    accepted: int = 0
    refused: dict[str, int] = field(default_factory=dict)
    retried_503: int = 0
    sent: int = 0
    failed: int = 0
    unexpected_failed: int = 0
    lost: int = 0
    stuck: int = 0
    duplicates: int = 0
    duplicate_copies: int = 0
    duplicate_bound: int = 0
    kills: int = 0
    max_s_to_terminal: float = 0.0
    # kill-recovery: seconds from the kill until the last email the killed worker held was sent
    recovery_s: float | None = None
    verdict: str = "FAIL"
    problems: list[str] = field(default_factory=list)
    faults: list[str] = field(default_factory=list)
    worker_events: dict[str, int] = field(default_factory=dict)
    logs: str = ""

    def as_json(self) -> dict[str, object]:
        return asdict(self)


def judge(
    scenario: Scenario,
    outcome: Outcome,
    load: LoadResult,
    rows: dict[str, Row],
    got: Counter[str],
    faults: FaultLog,
) -> None:
    """Fill in the counts and the verdict: FAIL on any loss, stuck email, unexplained
    refusal, duplicate beyond the scenario's bound, or recovery slower than its bound."""
    ids = list(load.accepted)
    outcome.accepted = len(ids)
    outcome.refused = {str(code): count for code, count in sorted(load.statuses.items())}
    outcome.retried_503 = load.retried
    outcome.kills = faults.kills
    for email_id in ids:
        row = rows.get(email_id)
        if row is None or row.status not in TERMINAL:
            outcome.stuck += 1
            continue
        if row.status == "sent":
            outcome.sent += 1
            if got[row.message_id] == 0:
                outcome.lost += 1
        else:
            outcome.failed += 1
            if not scenario.expect_failed(load.accepted[email_id]):
                outcome.unexpected_failed += 1
        if row.done_at is not None:
            outcome.max_s_to_terminal = max(
                outcome.max_s_to_terminal, row.done_at - faults.last_fault
            )
    missing_rows = sum(1 for i in ids if i not in rows)
    outcome.duplicates = sum(1 for c in got.values() if c > 1)
    outcome.duplicate_copies = sum(c - 1 for c in got.values() if c > 1)
    outcome.duplicate_bound = scenario.duplicate_bound(faults, load.accepted)
    outcome.max_s_to_terminal = round(outcome.max_s_to_terminal, 1)

    problems = outcome.problems
    if missing_rows:
        problems.insert(0, f"{missing_rows} accepted emails have no row")
    if outcome.stuck:
        problems.insert(0, f"stuck {outcome.stuck} (not sent or failed by the deadline)")
    if outcome.lost:
        problems.insert(0, f"lost {outcome.lost} (sent in the log, never received)")
    unexplained = {
        code: n for code, n in load.statuses.items() if code not in scenario.allowed_refusals
    }
    if unexplained:
        listed = ", ".join(
            f"{n} x {code or 'no answer'}" for code, n in sorted(unexplained.items())
        )
        problems.insert(0, f"requests not accepted, not explained by the fault: {listed}")
        problems += load.errors[:5]
    if outcome.unexpected_failed:
        problems.insert(0, f"{outcome.unexpected_failed} emails failed unexpectedly")
    if outcome.duplicate_copies > outcome.duplicate_bound:
        problems.insert(
            0,
            f"{outcome.duplicate_copies} duplicate copies > bound {outcome.duplicate_bound}"
            f" ({scenario.bound_reason})",
        )
    _judge_recovery(outcome, rows, faults)
    if outcome.accepted == 0:
        problems.insert(0, "no email was accepted")
    outcome.verdict = "FAIL" if problems else "PASS"


def _judge_recovery(outcome: Outcome, rows: dict[str, Row], faults: FaultLog) -> None:
    """When the fault killed a worker holding emails: all of them sent within the bound."""
    if faults.killed_at is None or faults.recovery_bound is None:
        return
    if not faults.held_at_kill:
        outcome.problems.append("the killed worker held no email: recovery not measured")
        return
    done = [rows[i].done_at for i in faults.held_at_kill if i in rows]
    if len(done) < len(faults.held_at_kill) or any(d is None for d in done):
        outcome.problems.append("an email the killed worker held never finished")
        return
    outcome.recovery_s = round(max(d for d in done if d is not None) - faults.killed_at, 1)
    if outcome.recovery_s > faults.recovery_bound:
        outcome.problems.insert(
            0,
            f"the killed worker's {len(done)} emails took {outcome.recovery_s} s"
            f" > {faults.recovery_bound:.0f} s",
        )
