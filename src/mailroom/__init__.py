"""Mailroom: queued email delivery with a complete, queryable log."""

__version__ = "0.1.0"
