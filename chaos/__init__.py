"""Fault-injection harness for Mailroom: `python -m chaos` (or `make chaos`).

Starts its own PostgreSQL database, Redis, SMTP sink, API and workers as subprocesses
(harness.stack),
sends emails through the API while injecting one fault per scenario, then checks from
PostgreSQL and the sink's record that no accepted email was lost.
"""
