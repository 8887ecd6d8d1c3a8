"""Runs one scenario end to end and judges it."""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections import Counter
from pathlib import Path

from chaos.checks import received, wait_terminal
from chaos.load import LoadResult, send_emails
from chaos.scenarios import FaultLog, Scenario
from chaos.stack import ChaosStack
from chaos.verdict import Outcome, judge

SETTLE_DEADLINE = 180.0  # seconds after the last fault (or the last request) to reach terminal


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
    stack = ChaosStack(
        scenario.name, scenario.sink, pg_proxy=scenario.pg_proxy, overrides=scenario.settings
    )
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

    judge(scenario, outcome, load, rows, got, faults)
    return outcome
