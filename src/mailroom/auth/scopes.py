"""What a key may do."""

from enum import StrEnum


class Scope(StrEnum):
    SEND = "send"
    LOGS_READ = "logs:read"
    EMAILS_WRITE = "emails:write"  # retry, requeue and cancel emails
    METRICS_READ = "metrics:read"  # GET /metrics (for a Prometheus scraper's key)
    # Add to and remove from the suppression list; send with "ignoreSuppressions": true.
    SUPPRESSIONS_WRITE = "suppressions:write"
    WEBHOOKS_WRITE = "webhooks:write"  # the project's webhook endpoints and their log
    # What the other scopes reach becomes every project's emails, not only the key's own
    # project's (see mailroom.projects.access); grants nothing by itself.
    ADMIN = "admin"


ALL_SCOPES = tuple(Scope)


def parse_scopes(value: str) -> tuple[Scope, ...]:
    """``send,logs:read`` → scopes; raises ValueError naming an unknown one."""
    scopes: list[Scope] = []
    for part in (p.strip() for p in value.split(",")):
        if not part:
            continue
        try:
            scope = Scope(part)
        except ValueError:
            known = ", ".join(s.value for s in Scope)
            raise ValueError(f"unknown scope {part!r}; known scopes: {known}") from None
        if scope not in scopes:
            scopes.append(scope)
    if not scopes:
        raise ValueError("give at least one scope")
    return tuple(scopes)
