"""The stack `make bench` and `make chaos` run Mailroom against, started and stopped by them.

A PostgreSQL database, a Redis and an SMTP port of their own, and Mailroom's API and worker
processes wired to them, each process logging to a file of its own (see harness.stack).
"""
