"""The suppression list: addresses Mailroom does not send to, one list per project.

An address is added by a hard bounce (the worker's own RCPT refusal with a 5.1.x status,
or a provider's or a DSN's report), by a complaint or unsubscribe, or by hand (API, CLI).
Sending leaves suppressed recipients out of the envelope (see mailroom.emails.accepting).

addresses   the matching key: exact local part, case-insensitive domain
models      the suppressions table
repository  its SQL (flushes, never commits)
service     the use cases the routes, the CLI, the worker and feedback call
schemas     what the API takes and returns
"""
