"""The one error embedded servers raise: a message for the person at the terminal."""

from __future__ import annotations


class EmbeddedServerError(Exception):
    """What went wrong and how to fix it, in words (never a traceback for the user)."""
