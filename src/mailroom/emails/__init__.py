"""The email domain: accepting emails, delivering them, and keeping the log of both.

Routes and the worker call the use cases, which own every state change and reach the
database only through the repositories (these flush; the caller's unit of work commits).

Use cases:
    accepting       POST /send and /send/batch: validate, store, dispatch after the commit
    log             one email with its attempts, pages of the log, today's report, counts
    report          the dashboard's overview: series from the counters, failure reasons
    operations      cancel, retry, requeue failed emails
    delivery        what the worker calls: claim, renew leases, record attempts, sweep
Their parts:
    new_emails      a new email's row, attachment rows and size checks, its first jobs
    intake          group commit for POST /send; idempotency: Idempotency-Key replays
    states, retry   the state machine; after an attempt: deliver, fail, or retry when
    schemas/        what the API accepts (requests) and returns (responses); log_query
    message, addresses, attachments, instants: building and checking what is sent
    message_format  how it is written: 7-bit bodies, literal headers, the same bytes each time
Repositories (SQL): transitions_ (new emails, cancel, retry, requeue), delivery_ (claims,
leases, attempt records), log_ (reads, counts, the report), report_ (the overview's series),
sweeper_ and purge_repository; provider_counts (attempts per provider, for the providers page).
Also: models (the tables), counters and buckets (the report's 15-minute counts),
retention (the purge's runs), cli (`mailroom emails`).
"""
