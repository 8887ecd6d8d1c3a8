"""Runs one scenario end to end and judges it."""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

from chaos.checks import TERMINAL, received, wait_terminal
from chaos.load import LoadResult, send_emails
from chaos.scenarios import CONCURRENCY, FaultLog, Scenario
from chaos.stack import ChaosStack

SETTLE_DEADLINE = 180.0  # seconds after the last fault (or the last request) to reach terminal


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
    kills: int = 0
    max_s_to_terminal: float = 0.0
    verdict: str = "FAIL"
    problems: list[str] = field(default_factory=list)
    faults: list[str] = field(default_factory=list)
    worker_events: dict[str, int] = field(default_factory=dict)
    logs: str = ""

    def as_json(self) -> dict[str, object]:
        return asdict(self)


def _log_events(paths: list[Path]) -> dict[str, int]:
    """Counts of each structlog event name at WARNING and above in the workers' logs."""
    events: Counter[str] = Counter()
    for path in paths:
        if not path.exists():
            continue
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                entry = json.loads(line)
            except ValueError:
                if "Traceback" in line or "Error" in line:
                    events["(non-json) " + line.strip()[:80]] += 1
                continue
            if isinstance(entry, dict):
                events[str(entry.get("event", "?"))] += 1
    return dict(events.most_common(15))


async def _drive(
    stack: ChaosStack, scenario: Scenario, n: int, rng: random.Random, faults: FaultLog
) -> LoadResult:
    load = LoadResult()
    started = time.time()
    faults.last_fault = started
    sending = asyncio.create_task(
        send_emails(
            load,
            stack.api_url,
            stack.api_key,
            n,
            scenario.subject_for,
            retry_503=scenario.retry_503,
        )
    )
    fault = asyncio.create_task(scenario.fault(stack, load, n, rng, faults))
    await asyncio.gather(sending, fault)
    return load


def run_scenario(scenario: Scenario, n: int, seed: int) -> Outcome:
    rng = random.Random(f"{seed}-{scenario.name}")
    outcome = Outcome(scenario=scenario.name, emails=n)
    stack = ChaosStack(scenario.name, scenario.sink, pg_proxy=scenario.pg_proxy)
    outcome.logs = str(stack.tmp)
    faults = FaultLog()
    try:
        stack.start()
        load = asyncio.run(_drive(stack, scenario, n, rng, faults))
        ids = list(load.accepted)
        deadline = max(faults.last_fault, load.finished_at) + SETTLE_DEADLINE
        rows = asyncio.run(wait_terminal(stack.plain_database_url, ids, deadline))
        outcome.problems += asyncio.run(scenario.check(stack, load.accepted, rows))
        got = received(stack.record)
    finally:
        outcome.faults = faults.notes
        outcome.worker_events = _log_events(stack.worker_logs())
        stack.stop()

    outcome.accepted = len(ids)
    outcome.refused = {str(code): count for code, count in sorted(load.statuses.items())}
    outcome.retried_503 = load.retried
    outcome.kills = faults.kills
    for email_id in ids:
        row = rows.get(email_id)
        if row is None or row.status not in TERMINAL:
            outcome.stuck += 1
            outcome.lost += 1
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
    outcome.max_s_to_terminal = round(outcome.max_s_to_terminal, 1)

    problems = outcome.problems
    if missing_rows:
        problems.insert(0, f"{missing_rows} accepted emails have no row")
    if outcome.lost:
        problems.insert(0, f"lost {outcome.lost}")
    if load.server_errors:
        problems.insert(0, f"{load.server_errors} answers were 5xx (not 503) or none")
        problems += load.errors[:5]
    if outcome.unexpected_failed:
        problems.insert(0, f"{outcome.unexpected_failed} emails failed unexpectedly")
    if scenario.kill_bound and outcome.duplicates > faults.kills * CONCURRENCY:
        problems.insert(
            0, f"{outcome.duplicates} duplicates > {faults.kills} kills x {CONCURRENCY}"
        )
    if outcome.accepted == 0:
        problems.insert(0, "no email was accepted")
    outcome.verdict = "FAIL" if problems else "PASS"
    return outcome
