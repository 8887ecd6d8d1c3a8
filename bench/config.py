"""Every knob of the benchmark in one place: sizes, concurrency, budgets and targets."""

from __future__ import annotations

from pathlib import Path

from mailroom.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = ROOT / "bench" / "results"
# apt-get download + dpkg -x of Postfix land here (git-ignored), reused by later runs.
CACHE_DIR = ROOT / ".cache" / "bench"

# -- the services under test --------------------------------------------------------
# Every process also gets LOG_FORMAT=json and the wiring to the benchmark's own services
# (harness.stack); everything not named here or there is at its default.

# Most runs measure throughput: settings for it, and a limit no run reaches (the limiter
# still runs, it never refuses).
SMTP_POOL_SIZE = 50  # SMTP connections per worker process
WORKER_CONCURRENCY = 100  # BullMQ jobs in flight per worker process
TUNED = {
    "SMTP_POOL_SIZE": str(SMTP_POOL_SIZE),
    "WORKER_CONCURRENCY": str(WORKER_CONCURRENCY),
    "SEND_RATE_LIMIT": "1000000/second",
    "LOG_LEVEL": "WARNING",
}
# The "defaults" runs: what a service started without settings does with one key. Taken
# from mailroom.settings and set explicitly, so that a .env or the shell cannot change them.
DEFAULTS = {
    name.upper(): str(Settings.model_fields[name].default)
    for name in ("smtp_pool_size", "worker_concurrency", "send_rate_limit", "log_level")
}
PROFILES = {"tuned": TUNED, "defaults": DEFAULTS}

# -- the runs -------------------------------------------------------------------------
EMAILS = 20_000  # per end-to-end run
HTTP_CONNECTIONS = 64  # wrk -c, for e2e single and ingest
WRK_THREADS = 2  # one per core
BATCH_SIZE = 500  # emails per POST /send/batch (the endpoint's maximum)
BATCH_CLIENTS = 4  # concurrent batch requests in flight
INGEST_SECONDS = 20
LIMIT_MESSAGES = 20_000  # smtp-source -> smtp-sink
LIMIT_SESSIONS = 20
LIMIT_MESSAGE_BYTES = 1000
# The "defaults" end-to-end run through POST /send goes at the key's limit (100/s), so
# fewer emails, from a client that waits out each 429's Retry-After as a real one would.
DEFAULTS_SINGLE_EMAILS = 3_000
DEFAULTS_SINGLE_CLIENTS = 16

# An end-to-end run that has not delivered everything by then is reported as a partial
# rate (what was sent by the deadline), so `make bench` stays bounded on slow code.
E2E_DEADLINE_S = 100.0
DB_POLL_S = 0.15  # how often the e2e runs read the emails table

# -- log queries ----------------------------------------------------------------------
LOG_ROWS = 1_000_000
LOG_ROWS_TODAY = 200_000
LOG_DAYS = 90  # the other rows are spread over the days before today
LOG_CHUNK = 100_000  # rows per INSERT ... SELECT (one transaction each)
LOG_RECIPIENTS = 100_000  # distinct recipients: each address has ~10 emails
LOG_REQUESTS = 500  # timed requests per query...
LOG_QUERY_BUDGET_S = 12.0  # ...or fewer, if they would take longer than this
LOG_WARMUP = 5
LOG_CURSOR_DEPTH = 50  # pages followed through nextCursor before timing that page
LOG_DEEP_PAGE = 500

# -- what the figures are compared with -----------------------------------------------
TARGET_E2E_BATCH = 1000.0  # emails/s
TARGET_E2E_SINGLE = 400.0  # emails/s
TARGET_INGEST_RPS = 1500.0
TARGET_INGEST_P99_MS = 50.0
TARGET_LOG_P99_MS = 20.0
TARGET_DASHBOARD_P99_MS = 50.0  # each dashboard page's server response
TARGET_DASHBOARD_JS_KB = 150.0  # the dashboard's JavaScript, compressed
TARGET_RSS_MB = 200.0
