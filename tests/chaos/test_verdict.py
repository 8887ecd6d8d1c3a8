"""`make chaos` exits non-zero on a lost or stuck email, an unexplained refusal, duplicates
beyond a scenario's bound, or a slow recovery: the verdict code on fabricated results."""

from __future__ import annotations

from collections import Counter

from chaos.__main__ import exit_code
from chaos.checks import Row
from chaos.load import LoadResult
from chaos.scenarios import SCENARIOS, FaultLog
from chaos.verdict import Outcome, judge

IDS = [f"id-{i}" for i in range(4)]


def _load() -> LoadResult:
    return LoadResult(accepted={i: f"chaos {n}" for n, i in enumerate(IDS)})


def _rows(status: str = "sent", done_at: float = 100.0) -> dict[str, Row]:
    return {i: Row(status, f"<{i}>", "chaos", 1, done_at) for i in IDS}


def _judged(
    scenario: str,
    *,
    load: LoadResult | None = None,
    rows: dict[str, Row] | None = None,
    got: Counter[str] | None = None,
    faults: FaultLog | None = None,
) -> Outcome:
    outcome = Outcome(scenario=scenario, emails=len(IDS))
    judge(
        SCENARIOS[scenario],
        outcome,
        load or _load(),
        _rows() if rows is None else rows,
        Counter({f"<{i}>": 1 for i in IDS}) if got is None else got,
        faults or FaultLog(last_fault=90.0),
    )
    return outcome


def test_a_clean_run_passes_and_exits_zero() -> None:
    outcome = _judged("redis-flush")
    assert outcome.verdict == "PASS", outcome.problems
    assert exit_code([outcome]) == 0


def test_a_lost_email_fails_the_run() -> None:
    outcome = _judged("redis-flush", got=Counter({f"<{i}>": 1 for i in IDS[1:]}))
    assert outcome.verdict == "FAIL"
    assert outcome.lost == 1
    assert exit_code([_judged("redis-flush"), outcome]) == 1


def test_a_stuck_email_fails_the_run() -> None:
    rows = _rows()
    rows[IDS[0]] = Row("sending", f"<{IDS[0]}>", "chaos", 1, None)
    outcome = _judged("smtp-codes", rows=rows)
    assert outcome.verdict == "FAIL"
    assert outcome.stuck == 1
    assert any(p.startswith("stuck 1") for p in outcome.problems)


def test_a_duplicate_where_the_fault_explains_none_fails() -> None:
    got = Counter({f"<{i}>": 1 for i in IDS})
    got[f"<{IDS[0]}>"] = 2
    outcome = _judged("redis-flush", got=got)
    assert outcome.verdict == "FAIL"
    assert "1 duplicate copies > bound 0" in outcome.problems[0]


def test_duplicates_within_the_kill_bound_pass_and_beyond_it_fail() -> None:
    faults = FaultLog(last_fault=90.0, kills=1)
    within = Counter({f"<{i}>": 2 for i in IDS})  # 4 copies, bound 1 kill x 20
    assert _judged("kill9", got=within, faults=faults).verdict == "PASS"
    beyond = Counter({f"<{i}>": 7 for i in IDS})  # 24 copies
    assert _judged("kill9", got=beyond, faults=faults).verdict == "FAIL"


def test_late_acceptances_are_bounded_by_the_late_emails() -> None:
    load = LoadResult(accepted={IDS[0]: "chaos-late 0", **dict.fromkeys(IDS[1:], "chaos")})
    once = Counter({f"<{i}>": 1 for i in IDS})
    once[f"<{IDS[0]}>"] = 2
    assert _judged("smtp-late", load=load, got=once).duplicate_bound == 1
    assert _judged("smtp-late", load=load, got=once).verdict == "PASS"
    # A copy of an email the server answered in time is beyond the bound.
    once[f"<{IDS[1]}>"] = 2
    assert _judged("smtp-late", load=load, got=once).verdict == "FAIL"


def test_refusals_fail_unless_the_fault_explains_them() -> None:
    load = _load()
    load.statuses[503] = 2
    assert _judged("redis-restart", load=load).verdict == "PASS"
    refused = _judged("redis-flush", load=load)
    assert refused.verdict == "FAIL"
    assert "2 x 503" in refused.problems[0]


def test_a_recovery_slower_than_its_bound_fails() -> None:
    faults = FaultLog(last_fault=90.0, kills=1, killed_at=80.0, recovery_bound=30.0)
    faults.held_at_kill = IDS[:2]
    fast = _judged("worker-kill", rows=_rows(done_at=95.0), faults=faults)
    assert fast.verdict == "PASS", fast.problems
    assert fast.recovery_s == 15.0
    slow = _judged("worker-kill", rows=_rows(done_at=120.0), faults=faults)
    assert slow.verdict == "FAIL"
    assert "took 40.0 s > 30 s" in slow.problems[0]


def test_no_scenario_run_is_a_failure() -> None:
    assert exit_code([]) == 1
