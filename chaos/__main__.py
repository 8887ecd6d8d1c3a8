"""`python -m chaos [--emails N] [--scenario NAME] [--seed S]`: run, print, exit 1 if one fails."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from pathlib import Path
from types import FrameType

from chaos.run import run_scenario
from chaos.scenarios import SCENARIOS
from chaos.verdict import Outcome

RESULTS = Path("chaos-results.json")
COLUMNS = [
    ("scenario", 14),
    ("accepted", 8),
    ("sent", 6),
    ("failed", 6),
    ("lost", 5),
    ("stuck", 5),
    ("dups", 5),
    ("bound", 5),
    ("max s", 6),
    ("recov s", 7),
    ("verdict", 7),
]


def _row(o: Outcome) -> list[str]:
    return [
        o.scenario,
        str(o.accepted),
        str(o.sent),
        str(o.failed),
        str(o.lost),
        str(o.stuck),
        str(o.duplicate_copies),
        str(o.duplicate_bound),
        f"{o.max_s_to_terminal:.1f}",
        f"{o.recovery_s:.1f}" if o.recovery_s is not None else "-",
        o.verdict,
    ]


def table(outcomes: list[Outcome]) -> str:
    lines = ["  ".join(name.ljust(width) for name, width in COLUMNS)]
    lines.append("  ".join("-" * width for _, width in COLUMNS))
    for o in outcomes:
        cells = _row(o)
        lines.append("  ".join(c.ljust(w) for c, (_, w) in zip(cells, COLUMNS, strict=True)))
    return "\n".join(lines)


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m chaos", description=__doc__)
    parser.add_argument("--emails", type=int, default=5000, help="emails per scenario")
    parser.add_argument(
        "--scenario",
        action="append",
        choices=sorted(SCENARIOS),
        help="run only this scenario (repeatable); default: all, in order",
    )
    parser.add_argument("--seed", type=int, default=None, help="random seed (default: the time)")
    args = parser.parse_args(argv)
    seed = args.seed if args.seed is not None else int(time.time())
    names = args.scenario or list(SCENARIOS)
    signal.signal(signal.SIGTERM, _interrupt)

    print(f"chaos: {len(names)} scenario(s), {args.emails} emails each, seed {seed}", flush=True)
    outcomes: list[Outcome] = []
    for name in names:
        scenario = SCENARIOS[name]
        print(f"\n== {name}: {scenario.description}", flush=True)
        started = time.monotonic()
        try:
            outcome = run_scenario(scenario, args.emails, seed)
        except KeyboardInterrupt:
            print("interrupted: everything started has been stopped", file=sys.stderr)
            return 130
        except Exception as exc:  # noqa: BLE001 - a harness fault fails this scenario only
            outcome = Outcome(scenario=name, emails=args.emails, problems=[f"harness: {exc!r}"])
        took = time.monotonic() - started
        print(f"   {outcome.verdict} in {took:.0f} s; logs in {outcome.logs}", flush=True)
        for note in outcome.faults:
            print(f"   fault: {note}")
        for problem in outcome.problems[:10]:
            print(f"   problem: {problem}")
        outcomes.append(outcome)

    print()
    print(table(outcomes))
    RESULTS.write_text(
        json.dumps(
            {"seed": seed, "emails": args.emails, "results": [o.as_json() for o in outcomes]},
            indent=2,
        )
        + "\n",
        encoding="utf-8",
    )
    print(f"\nwritten to {RESULTS}")
    return exit_code(outcomes)


def exit_code(outcomes: list[Outcome]) -> int:
    """0 only when every scenario ran and passed."""
    return 0 if outcomes and all(o.verdict == "PASS" for o in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
