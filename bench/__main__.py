"""`python -m bench [--only RUNS] [--emails N] [--api-processes N] [--worker-processes 1,2]`

Runs the benchmark against services of its own (see bench/stack.py), prints one table
with the targets, and writes it with the raw figures to bench/results/. Exits 1 if a run
broke or lost or failed emails (a figure that misses its target is reported, not an error).
The runs are at the tuned settings of bench/config.py, but for the "defaults" runs: one
worker process and one key at the service's default settings.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from functools import partial
from types import FrameType
from typing import Any

from harness.procs import ToolMissing

from bench import config, machine, report
from bench.e2e import E2EResult, run_e2e
from bench.embedded import embedded_rows, run_embedded
from bench.ingest import run_ingest
from bench.limit import run_limit
from bench.logs import run_logs
from bench.pipelining import pipelining_rows, run_pipelining
from bench.providers import run_providers
from bench.report import ERROR, Row
from bench.stack import BenchStack
from bench.suppressions import run_suppressions
from bench.tools import Postfix, ensure_postfix, ensure_wrk
from bench.webhooks import run_webhooks, webhook_rows

RUNS = (
    "limit",
    "pipelining",
    "ingest",
    "e2e-single",
    "e2e-batch",
    "ingest-defaults",
    "e2e-single-defaults",
    "e2e-batch-defaults",
    "logs",
    "embedded",
    "suppressions",
    "webhooks",
    "providers",
)
ALIASES = {
    "e2e": ("e2e-single", "e2e-batch"),
    "defaults": ("ingest-defaults", "e2e-single-defaults", "e2e-batch-defaults"),
}


def _runs(value: str) -> list[str]:
    chosen: list[str] = []
    for part in (p.strip() for p in value.split(",") if p.strip()):
        names = ALIASES.get(part, (part,))
        for name in names:
            if name not in RUNS:
                known = ", ".join([*RUNS, *ALIASES])
                raise argparse.ArgumentTypeError(f"unknown run {part!r}; choose from {known}")
            chosen.append(name)
    return chosen


def _counts(value: str) -> list[int]:
    try:
        counts = [int(p) for p in value.split(",") if p.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a list of numbers") from None
    if not counts or min(counts) < 1:
        raise argparse.ArgumentTypeError("give one or more counts of at least 1, e.g. 1,2")
    return counts


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--only",
        type=_runs,
        default=list(RUNS),
        help=f"comma-separated runs: {', '.join(RUNS)} (e2e = both tuned e2e runs, "
        "defaults = the three runs at the default settings); default all",
    )
    parser.add_argument(
        "--emails",
        type=int,
        default=config.EMAILS,
        help="emails per e2e run (the defaults run through POST /send: "
        f"{config.DEFAULTS_SINGLE_EMAILS:,}, at the key's limit)",
    )
    parser.add_argument(
        "--api-processes",
        type=int,
        default=1,
        help="API processes (`mailroom api --processes N` when N > 1)",
    )
    parser.add_argument(
        "--worker-processes",
        type=_counts,
        default=[1, 2],
        help="worker process counts to run each tuned e2e run with (default 1,2)",
    )
    return parser.parse_args(argv)


@dataclass
class Session:
    """Everything measured so far: table rows, raw figures and what went wrong."""

    rows: list[Row] = field(default_factory=list)
    raw: dict[str, Any] = field(default_factory=dict)
    e2e: list[E2EResult] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def note_problems(self, run: str, problems: list[str]) -> None:
        for problem in problems:
            print(f"   problem: {problem}", flush=True)
            self.problems.append(f"{run}: {problem}")

    def attempt(self, name: str, run: Callable[[], None]) -> None:
        """Run one benchmark; a failure becomes an ERROR row and the next one still runs."""
        busy = machine.wait_for_quiet()
        self.raw.setdefault("machine_busy_before", {})[name] = round(busy, 2)
        note = f" (machine {busy:.0%} busy before it)" if busy > machine.QUIET_BUSY else ""
        print(f"\n== {name}{note}", flush=True)
        began = time.monotonic()
        try:
            run()
        except (KeyboardInterrupt, ToolMissing):
            raise
        except Exception as exc:  # noqa: BLE001 - one broken run must not hide the others
            traceback.print_exc()
            self.rows.append(Row(name, "error", f"{type(exc).__name__}: {exc}"[:160], "", ERROR))
            self.problems.append(f"{name}: {exc!r}")
        print(f"   took {time.monotonic() - began:.0f} s", flush=True)


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def _limit(session: Session, postfix: Postfix) -> None:
    result = run_limit(postfix)
    session.raw["limit"] = {
        **asdict(result),
        "reused_per_s": result.reused_per_s,
        "per_message_per_s": result.per_message_per_s,
    }
    session.rows += report.limit_rows(result)
    print(
        f"   {result.reused_per_s:,.0f} msg/s over reused connections, "
        f"{result.per_message_per_s:,.0f} msg/s with one connection per message",
        flush=True,
    )


def _pipelining(session: Session, postfix: Postfix) -> None:
    runs = run_pipelining(postfix)
    session.raw["pipelining"] = [{**asdict(r), "emails_per_s": r.emails_per_s} for r in runs]
    session.rows += pipelining_rows(runs)
    session.note_problems("pipelining", [p for r in runs for p in r.problems])


def _ingest(
    session: Session, stack: BenchStack, wrk: str, api_processes: int, profile: str
) -> None:
    result = run_ingest(stack, wrk, config.INGEST_SECONDS, profile=profile)
    if profile == "defaults":
        session.raw["ingest-defaults"] = asdict(result)
        rows = report.ingest_defaults_rows(result, config.DEFAULTS["SEND_RATE_LIMIT"])
    else:
        session.raw["ingest"] = asdict(result)
        rows = report.ingest_rows(result, api_processes)
    session.rows += rows
    for row in rows:
        print(f"   {row.result} ({row.detail}); peak RSS {result.rss_mb}", flush=True)
    session.note_problems("ingest", result.problems)


def _e2e(
    session: Session,
    stack: BenchStack,
    mode: str,
    workers: int,
    emails: int,
    wrk: str,
    profile: str = "tuned",
) -> None:
    result = run_e2e(stack, mode, workers, emails, wrk, profile=profile)
    session.e2e.append(result)
    session.raw.setdefault("e2e", []).append(
        {
            **asdict(result),
            "emails_per_s": result.emails_per_s,
            "ingest_per_s": result.ingest_per_s,
            "drain_per_s": result.drain_per_s,
        }
    )
    row = report.e2e_row(result)
    session.rows.append(row)
    print(f"   {row.result} ({row.detail}); peak RSS {result.rss_mb}", flush=True)
    session.note_problems(result.name, result.problems)
    e2e_verdict(session, result)


def e2e_verdict(session: Session, result: E2EResult) -> None:
    """An email not delivered is a problem (so `make bench` exits 1), not only a table cell."""
    undelivered = result.undelivered()
    if undelivered is not None:
        session.note_problems(result.name, [undelivered])


def _logs(session: Session, stack: BenchStack) -> None:
    result = run_logs(stack)
    session.raw["logs"] = asdict(result)
    rows = report.logs_rows(result)
    session.rows += rows
    for row in rows:
        print(f"   {row.run}: {row.result} ({row.detail})", flush=True)
    session.note_problems("logs", result.problems)


def _suppressions(session: Session, stack: BenchStack, wrk: str) -> None:
    result = run_suppressions(stack, wrk)
    session.raw["suppressions"] = {**asdict(result), "added_p99_ms": result.added_p99_ms}
    rows = report.suppressions_rows(result)
    session.rows += rows
    for row in rows:
        print(f"   {row.run}: {row.result} ({row.detail})", flush=True)
    session.note_problems("suppressions", result.problems)


def _webhooks(session: Session, stack: BenchStack, emails: int) -> None:
    runs = run_webhooks(stack, emails)
    session.raw["webhooks"] = [{**asdict(r), "emails_per_s": r.e2e.emails_per_s} for r in runs]
    rows = webhook_rows(runs)
    session.rows += rows
    for row in rows:
        print(f"   {row.run}: {row.result} ({row.detail})", flush=True)
    for r in runs:
        session.note_problems(f"webhooks ({r.receiver})", r.problems)


def _providers(session: Session, stack: BenchStack, emails: int) -> None:
    result = run_providers(stack, emails)
    session.raw["providers"] = {
        **asdict(result.e2e),
        "emails_per_s": result.e2e.emails_per_s,
        "per_provider_per_s": result.per_provider,
        "pacing_cpu_us": result.pacing_cpu_us,
        "pacing_cpu_us_alone": result.pacing_cpu_us_alone,
    }
    rows = report.providers_rows(result)
    session.rows += rows
    for row in rows:
        print(f"   {row.run}: {row.result} ({row.detail})", flush=True)
    session.note_problems("providers", result.e2e.problems)


def _rss(session: Session) -> None:
    """The peak RSS rows, over the end-to-end runs (API and workers both busy)."""
    peaks = {
        f"{name}@{result.name}": mb for result in session.e2e for name, mb in result.rss_mb.items()
    }
    session.rows += report.rss_rows(peaks)


def _defaults(session: Session, stack: BenchStack, args: argparse.Namespace, wrk: str) -> None:
    """The runs at the default settings: one key, one API and one worker process."""
    if "ingest-defaults" in args.only:
        session.attempt(
            "defaults: ingest",
            lambda: _ingest(session, stack, wrk, args.api_processes, "defaults"),
        )
    for mode, emails in (("single", config.DEFAULTS_SINGLE_EMAILS), ("batch", args.emails)):
        if f"e2e-{mode}-defaults" in args.only:
            session.attempt(
                f"defaults: e2e {mode}, 1 worker",
                partial(_e2e, session, stack, mode, 1, emails, wrk, "defaults"),
            )


def _embedded(session: Session) -> None:
    result = run_embedded()
    session.raw["embedded"] = asdict(result)
    rows = embedded_rows(result)
    session.rows += rows
    for row in rows:
        print(f"   {row.run}: {row.result} ({row.detail})", flush=True)
    session.note_problems("embedded", result.problems)


def run_all(args: argparse.Namespace, session: Session) -> None:
    runs: list[str] = args.only
    if "embedded" in runs:  # `make run` on a fresh clone; needs none of the tools below
        session.attempt("embedded", lambda: _embedded(session))
        runs = [run for run in runs if run != "embedded"]
        if not runs:
            return
    wrk = (
        ensure_wrk()
        if {"ingest", "e2e-single", "ingest-defaults", "suppressions"} & set(runs)
        else ""
    )
    postfix = ensure_postfix()
    if "limit" in runs:
        session.attempt("limit", lambda: _limit(session, postfix))
    if "pipelining" in runs:  # the SMTP client alone, 20 ms from smtp-sink (bench/pipelining)
        session.attempt("pipelining", lambda: _pipelining(session, postfix))
    if not set(runs) - {"limit", "pipelining"}:
        return
    stack = BenchStack(postfix, api_processes=args.api_processes)
    try:
        stack.start()
        if "ingest" in runs:
            session.attempt(
                "ingest", lambda: _ingest(session, stack, wrk, args.api_processes, "tuned")
            )
        for mode in ("single", "batch"):
            if f"e2e-{mode}" not in runs:
                continue
            for workers in args.worker_processes:
                session.attempt(
                    f"e2e {mode}, {workers} worker{'s' if workers > 1 else ''}",
                    partial(_e2e, session, stack, mode, workers, args.emails, wrk),
                )
            scaling = report.scaling_row(mode, session.e2e)
            if scaling is not None:
                session.rows.append(scaling)
        _defaults(session, stack, args, wrk)
        _rss(session)
        if "logs" in runs:
            session.attempt("logs", lambda: _logs(session, stack))
        if "suppressions" in runs:
            session.attempt("suppressions", lambda: _suppressions(session, stack, wrk))
        if "webhooks" in runs:
            session.attempt("webhooks", lambda: _webhooks(session, stack, args.emails))
        if "providers" in runs:
            session.attempt("providers", lambda: _providers(session, stack, args.emails))
    finally:
        keep = bool(session.problems)
        stack.close(keep_logs=keep)
        if keep:
            print(f"\nthe processes' logs are in {stack.tmp}", flush=True)


def save(session: Session, args: argparse.Namespace, started: datetime, took: float) -> str:
    config.RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    document = {
        "started": started.isoformat(),
        "seconds": round(took, 1),
        "machine": machine.describe(),
        "options": {
            "runs": args.only,
            "emails": args.emails,
            "api_processes": args.api_processes,
            "worker_processes": args.worker_processes,
            "smtp_pool_size": config.SMTP_POOL_SIZE,
            "worker_concurrency": config.WORKER_CONCURRENCY,
            "http_connections": config.HTTP_CONNECTIONS,
            "settings": config.PROFILES,
        },
        "rows": [row.as_json() for row in session.rows],
        "results": session.raw,
        "problems": session.problems,
    }
    text = json.dumps(document, indent=2, default=str, ensure_ascii=False) + "\n"
    path = config.RESULTS_DIR / f"{started.strftime('%Y%m%dT%H%M%SZ')}.json"
    path.write_text(text, encoding="utf-8")
    (config.RESULTS_DIR / "latest.json").write_text(text, encoding="utf-8")
    return str(path.relative_to(config.ROOT))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _interrupt)
    started = datetime.now(UTC)
    began = time.monotonic()
    session = Session()
    print(
        f"bench: {', '.join(args.only)}; {args.emails:,} emails per e2e run, "
        f"{args.api_processes} API process(es), workers {args.worker_processes}",
        flush=True,
    )
    try:
        run_all(args, session)
    except KeyboardInterrupt:
        print("interrupted: everything started has been stopped", file=sys.stderr)
        return 130
    except ToolMissing as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 2
    took = time.monotonic() - began
    print(f"\n{report.settings_note()}\n\n{report.table(session.rows)}\n")
    busy = {
        run: b
        for run, b in session.raw.get("machine_busy_before", {}).items()
        if b > machine.QUIET_BUSY
    }
    if busy:
        listed = ", ".join(f"{run} {b:.0%}" for run, b in busy.items())
        print(f"warning: the machine was busy before some runs ({listed}): figures are low")
    for problem in session.problems:
        print(f"problem: {problem}")
    path = save(session, args, started, took)
    print(f"total {took:.0f} s; written to {path} and bench/results/latest.json")
    return 1 if session.problems else 0


if __name__ == "__main__":
    sys.exit(main())
