"""The results table: one row per figure, with its target and PASS/MISS."""

from __future__ import annotations

from dataclasses import dataclass

from bench.config import (
    DEFAULTS,
    LIMIT_MESSAGE_BYTES,
    TARGET_DASHBOARD_JS_KB,
    TARGET_DASHBOARD_P99_MS,
    TARGET_E2E_BATCH,
    TARGET_E2E_SINGLE,
    TARGET_INGEST_P99_MS,
    TARGET_INGEST_RPS,
    TARGET_LOG_P99_MS,
    TARGET_RSS_MB,
    TUNED,
)
from bench.e2e import E2EResult
from bench.ingest import IngestResult
from bench.limit import LimitResult
from bench.logs import LogsResult
from bench.providers import RATE, ProvidersResult
from bench.suppressions import FEEDBACK_BATCH, SuppressionsResult

PASS, MISS, SKIP, ERROR, INFO = "PASS", "MISS", "SKIP", "ERROR", ""


@dataclass(frozen=True)
class Row:
    run: str
    result: str
    detail: str = ""
    target: str = ""
    verdict: str = INFO

    def as_json(self) -> dict[str, str]:
        return {
            "run": self.run,
            "result": self.result,
            "detail": self.detail,
            "target": self.target,
            "verdict": self.verdict,
        }


def _verdict(ok: bool) -> str:
    return PASS if ok else MISS


def limit_rows(r: LimitResult) -> list[Row]:
    how = f"{r.messages:,} messages of {LIMIT_MESSAGE_BYTES:,} B, {r.sessions} sessions"
    return [
        Row("limit: smtp-source → smtp-sink, reused conns", f"{r.reused_per_s:,.0f} msg/s", how),
        Row("limit: same, one conn per message", f"{r.per_message_per_s:,.0f} msg/s", how),
    ]


def e2e_row(r: E2EResult) -> Row:
    target = TARGET_E2E_BATCH if r.mode == "batch" else TARGET_E2E_SINGLE
    tuned = r.profile == "tuned"  # the targets are for the tuned settings
    if r.skipped:
        return Row(r.name, r.skipped, "", f"≥ {target:,.0f} emails/s", SKIP)
    if r.complete:
        detail = f"{r.sent:,} in {r.seconds:.1f} s; ingest {r.ingest_per_s:,.0f}/s"
        if r.drain_per_s:
            detail += f", then {r.drain_per_s:,.0f}/s"
    else:
        detail = f"INCOMPLETE: {r.sent:,}/{r.emails:,} sent by the {r.seconds:.0f} s deadline"
        detail += f"; {r.stored:,} stored"
    if r.failed:
        detail += f"; {r.failed:,} failed"
    if r.limited:
        detail += f"; {r.limited:,} 429s waited out"
    result = f"{r.emails_per_s:,.0f} emails/s"
    if not tuned:
        return Row(r.name, result, detail, "", ERROR if r.problems else INFO)
    ok = r.complete and not r.problems and r.emails_per_s >= target
    return Row(r.name, result, detail, f"≥ {target:,.0f} emails/s", _verdict(ok))


def scaling_row(mode: str, results: list[E2EResult]) -> Row | None:
    """2 worker processes against 1, when both ran."""
    by_workers = {
        r.workers: r for r in results if r.mode == mode and r.profile == "tuned" and not r.skipped
    }
    one, two = by_workers.get(1), by_workers.get(2)
    if one is None or two is None or one.emails_per_s == 0:
        return None
    ratio = two.emails_per_s / one.emails_per_s
    return Row(
        f"e2e {mode}: 2 workers vs 1",
        f"x {ratio:.2f}",
        f"{one.emails_per_s:,.0f} → {two.emails_per_s:,.0f} emails/s",
        "> x 1.00",
        _verdict(ratio > 1.0),
    )


def ingest_rows(r: IngestResult, api_processes: int) -> list[Row]:
    w = r.wrk
    if w is None:
        return []
    what = f"ingest POST /send, {api_processes} API proc, no worker"
    detail = f"{w.requests:,} in {w.duration_s:.0f} s; non-2xx {w.non_2xx}"
    if w.socket_errors:
        detail += f"; socket errors {w.socket_errors}"
    return [
        Row(
            what,
            f"{w.rps:,.0f} req/s",
            detail,
            f"≥ {TARGET_INGEST_RPS:,.0f} req/s",
            _verdict(w.rps >= TARGET_INGEST_RPS and not r.problems),
        ),
        Row(
            "ingest latency",
            f"p99 {w.p99_ms:.1f} ms",
            f"p50 {w.p50_ms:.1f} ms, p90 {w.p90_ms:.1f} ms, max {w.max_ms:.0f} ms",
            f"p99 ≤ {TARGET_INGEST_P99_MS:.0f} ms",
            _verdict(w.p99_ms <= TARGET_INGEST_P99_MS),
        ),
    ]


def ingest_defaults_rows(r: IngestResult, limit: str) -> list[Row]:
    """At the default settings: what one key gets through its limit, and how fast the
    API answers everything (the 429s included)."""
    w = r.wrk
    if w is None:
        return []
    detail = f"{w.accepted:,} 202s, {w.limited:,} 429s in {w.duration_s:.0f} s"
    if w.non_2xx - w.limited:
        detail += f"; other non-2xx {w.non_2xx - w.limited}"
    if w.socket_errors:
        detail += f"; socket errors {w.socket_errors}"
    verdict = ERROR if r.problems else INFO
    return [
        Row(
            f"defaults: ingest POST /send, 1 key at {limit}",
            f"{w.accepted_per_s:,.0f} accepted/s",
            detail,
            "",
            verdict,
        ),
        Row(
            "defaults: ingest answers, 202 and 429",
            f"{w.rps:,.0f} req/s",
            f"p50 {w.p50_ms:.1f} ms, p90 {w.p90_ms:.1f} ms, p99 {w.p99_ms:.1f} ms",
            "",
            verdict,
        ),
    ]


def logs_rows(r: LogsResult) -> list[Row]:
    rows = []
    for q in r.queries:
        detail = f"p50 {q.p50_ms:.1f} ms, max {q.max_ms:.0f} ms, {q.requests} requests"
        if q.errors:
            detail += f", {q.errors} errors"
        if q.path.startswith("/dashboard"):
            rows.append(
                Row(
                    f"dashboard {q.name}",
                    f"p99 {q.p99_ms:.1f} ms",
                    detail,
                    f"p99 ≤ {TARGET_DASHBOARD_P99_MS:.0f} ms",
                    _verdict(q.p99_ms <= TARGET_DASHBOARD_P99_MS and not q.errors),
                )
            )
            continue
        rows.append(
            Row(
                f"GET /logs/email {q.name}",
                f"p99 {q.p99_ms:.1f} ms",
                detail,
                f"p99 ≤ {TARGET_LOG_P99_MS:.0f} ms",
                _verdict(q.p99_ms <= TARGET_LOG_P99_MS and not q.errors),
            )
        )
    rows.append(dashboard_js_row())
    if r.live_cpu_percent is not None:
        rows.append(
            Row(
                "dashboard live updates",
                f"{r.live_cpu_percent:.1f} % CPU",
                "the API with 50 emails pages' live streams open, nothing changing",
                "≤ 5 % CPU",
                _verdict(r.live_cpu_percent <= 5.0),
            )
        )
    return rows


def dashboard_js_row() -> Row:
    from bench.dashboard import javascript_bytes

    raw, compressed = javascript_bytes()
    return Row(
        "dashboard JavaScript",
        f"{compressed / 1024:.1f} KB gzip",
        f"{raw / 1024:.1f} KB uncompressed",
        f"≤ {TARGET_DASHBOARD_JS_KB:.0f} KB gzip",
        _verdict(compressed / 1024 <= TARGET_DASHBOARD_JS_KB),
    )


def rss_rows(peaks: dict[str, float]) -> list[Row]:
    """Peak RSS of the API and of the workers, the largest over the runs that had them."""
    rows = []
    for role in ("api", "worker"):
        # keys look like "worker-1@e2e batch, 2 workers"
        values = [mb for name, mb in peaks.items() if name.split("@")[0].split("-")[0] == role]
        if values:
            rows.append(
                Row(
                    f"peak RSS, {role} process",
                    f"{max(values):.0f} MB",
                    "largest VmHWM over the runs (one process)",
                    f"< {TARGET_RSS_MB:.0f} MB",
                    _verdict(max(values) < TARGET_RSS_MB),
                )
            )
    return rows


def settings_note() -> str:
    """The settings the rows were measured with, to print above the table."""

    def listed(settings: dict[str, str]) -> str:
        return ", ".join(f"{name}={value}" for name, value in settings.items())

    return (
        f'Settings: {listed(TUNED)}, LOG_FORMAT=json; the "defaults" rows: '
        f"{listed(DEFAULTS)}, LOG_FORMAT=json, one key (every other setting at its default)."
    )


def table(rows: list[Row]) -> str:
    """A Markdown table whose columns also line up in a terminal."""
    header = ("run", "result", "detail", "target", "verdict")
    cells = [header, *[(r.run, r.result, r.detail, r.target, r.verdict) for r in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    lines = [
        "| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |"
        for row in cells
    ]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def suppressions_rows(r: SuppressionsResult) -> list[Row]:
    """The suppression list's cost on POST /send, and feedback ingestion."""
    rows: list[Row] = []
    if r.empty is not None and r.full is not None:
        rows.append(
            Row(
                f"POST /send p99 with {r.rows:,} suppressed",
                f"{r.added_p99_ms:+.2f} ms",
                f"p99 {r.empty.p99_ms:.1f} ms (list empty) → {r.full.p99_ms:.1f} ms; "
                f"{r.full.rps:,.0f} req/s",
                "≤ +1 ms",
                _verdict(r.added_p99_ms <= 1.0 and not r.problems),
            )
        )
        rows.append(
            Row(
                "suppression check alone",
                f"p99 {r.check_p99_ms:.2f} ms",
                f"p50 {r.check_p50_ms:.2f} ms; one indexed query, session included",
                "p99 ≤ 1 ms",
                _verdict(r.check_p99_ms <= 1.0),
            )
        )
    for w, batch in ((r.feedback, 1), (r.feedback_batched, FEEDBACK_BATCH)):
        if w is None:
            continue
        per_s = w.accepted_per_s * batch
        rows.append(
            Row(
                f"feedback ingestion, 1 API proc, {batch} event{'s' if batch > 1 else ''}/request",
                f"{per_s:,.0f} events/s",
                f"{w.accepted * batch:,} Brevo hard bounces in {w.duration_s:.0f} s, "
                f"p99 {w.p99_ms:.1f} ms per request",
                "≥ 1,000 events/s",
                _verdict(per_s >= 1000 and not r.problems),
            )
        )
    return rows


def providers_rows(r: ProvidersResult) -> list[Row]:
    """Two providers at RATE/s each: the whole within 5 %, each provider, pacing's CPU."""
    e2e, configured = r.e2e, r.configured
    name = f"providers: 2 x {RATE}/s, 2 workers"
    if not e2e.complete:
        detail = f"INCOMPLETE: {e2e.sent:,}/{e2e.emails:,} sent by the {e2e.seconds:.0f} s deadline"
        return [Row(name, f"{e2e.emails_per_s:,.0f} emails/s", detail, "", ERROR)]
    ok = not e2e.problems and abs(e2e.emails_per_s - configured) <= configured * 0.05
    rows = [
        Row(
            name,
            f"{e2e.emails_per_s:,.0f} emails/s",
            f"{e2e.sent:,} in {e2e.seconds:.1f} s (first request → last sent)",
            f"{configured:,} ± 5 %",
            _verdict(ok),
        )
    ]
    for provider, rate in sorted(r.per_provider.items()):
        rows.append(
            Row(
                f"providers: {provider} alone",
                f"{rate:,.0f} emails/s",
                "accepted attempts over their span",
                f"{RATE} ± 5 %",
                _verdict(abs(rate - RATE) <= RATE * 0.05),
            )
        )
    rows.append(
        Row(
            "providers: pacing CPU per worker",
            f"{r.pacing_cpu_share:.1%}",
            f"{r.pacing_cpu_us:.0f} µs per decision at {RATE}/s, 50 asking together",
            "≤ 5 %",
            _verdict(r.pacing_cpu_share <= 0.05),
        )
    )
    rows.append(
        Row(
            "providers: pacing CPU, one at a time",
            f"{r.pacing_cpu_share_alone:.1%}",
            f"{r.pacing_cpu_us_alone:.0f} µs per decision at {RATE}/s",
        )
    )
    return rows
