"""Making and recognising API keys: ``mr_`` followed by 43 URL-safe characters (256 bits)."""

from __future__ import annotations

import hashlib
import secrets

KEY_PREFIX = "mr_"
_SHOWN = 8  # characters after the prefix kept for display


def generate_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def display_prefix(key: str) -> str:
    return key[: len(KEY_PREFIX) + _SHOWN]


def looks_like_key(value: str) -> bool:
    return value.startswith(KEY_PREFIX) and 20 <= len(value) <= 200 and value.isascii()
