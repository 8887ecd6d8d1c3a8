"""The email domain: accepting emails, delivering them, and keeping the log of both.

Routes and the worker call the use cases; they own every state change, and reach the
database only through the repositories (which flush; the caller's unit of work commits).

Use cases:
    accepting     POST /send and /send/batch: validate, store, dispatch after the commit
    log           one email with its attempts, pages of the log, today's report, counts
    operations    cancel, retry, requeue failed emails
    delivery      what the worker calls: claim, renew leases, record attempts, sweep
Their parts:
    new_emails    a new email's row, attachment rows and size checks, its first jobs
    intake        group commit of POST /send; idempotency: Idempotency-Key replays
    states        the state machine; retry: deliver, fail or retry later, and when
    schemas/      what the API accepts (requests) and returns (responses); log_query
    message, addresses, attachments, instants: building and checking what is sent
Repositories (SQL): transitions_, delivery_, log_, sweeper_ and purge_repository; models
(tables); counters (the report's buckets folded), retention (the purge); cli.
"""
