"""What a project name may be: a short lower-case slug, safe in a URL and a shell."""

from __future__ import annotations

import re

# The project every install starts with: keys created without --project, and every key
# and email from before projects (migration 0006).
DEFAULT_PROJECT_NAME = "default"
MAX_NAME_LENGTH = 64
NAME_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,63}$"
_NAME = re.compile(NAME_PATTERN)


def check_name(value: str) -> str:
    """``value`` if it is a valid project name; raises ValueError saying why not."""
    if _NAME.fullmatch(value):
        return value
    if value and len(value) <= MAX_NAME_LENGTH and _NAME.fullmatch(value.lower()):
        raise ValueError(f"project names are lower-case: use {value.lower()!r}")
    raise ValueError(
        f"{value[:80]!r} is not a project name: 1 to {MAX_NAME_LENGTH} characters, "
        "lower-case letters, digits, '-' and '_', starting with a letter or digit"
    )
