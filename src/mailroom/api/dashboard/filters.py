"""The emails page's filters, read from its URL (so a filtered view can be bookmarked).

Every bad value is reported on the page, next to its field, and left out of the filter.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from starlette.datastructures import QueryParams

from mailroom.addresses import parse_mailbox
from mailroom.emails.log import Criteria
from mailroom.emails.log_query import day_bounds, decode_cursor
from mailroom.emails.log_repository import Position
from mailroom.emails.states import EmailStatus

FIELDS = ("status", "to", "from", "subject", "since", "until", "project")
MAX_TEXT = 200
PAGE_SIZE = 50


@dataclass
class EmailFilters:
    values: dict[str, str] = field(default_factory=dict)  # as given, for the form
    errors: dict[str, str] = field(default_factory=dict)
    criteria: Criteria = field(default_factory=Criteria)
    after: Position | None = None
    cursor: str | None = None

    def query(self, **changes: str | None) -> str:
        """This view's query string, with ``changes`` (None removes a field)."""
        params = {k: v for k, v in self.values.items() if v}
        if self.cursor:
            params["cursor"] = self.cursor
        for name, value in changes.items():
            if value is None:
                params.pop(name, None)
            else:
                params[name] = value
        return urlencode(params)


def read_filters(params: QueryParams, tz: str) -> EmailFilters:
    found = EmailFilters()
    zone = ZoneInfo(tz)
    values = {name: params.get(name, "").strip()[:MAX_TEXT] for name in FIELDS}
    found.values = values
    statuses: tuple[EmailStatus, ...] = ()
    if values["status"]:
        try:
            statuses = (EmailStatus(values["status"]),)
        except ValueError:
            found.errors["status"] = "Unknown status"
    recipient = None
    if values["to"]:
        try:
            recipient = parse_mailbox(values["to"]).address.lower()
        except ValueError:
            found.errors["to"] = "Not an email address"
    since = until = None
    for name in ("since", "until"):
        if values[name]:
            try:
                day = date.fromisoformat(values[name])
            except ValueError:
                found.errors[name] = "Use a date like 2026-12-31"
                continue
            start, end = day_bounds(day, zone)
            if name == "since":
                since = start
            else:
                until = end  # through the end of that day
    if since is not None and until is not None and since >= until:
        found.errors["until"] = "Must not be before the start date"
        until = None
    found.criteria = Criteria(
        statuses=statuses,
        recipient=recipient,
        sender_contains=values["from"] or None,
        subject_contains=values["subject"] or None,
        since=since,
        until=until,
    )
    cursor = params.get("cursor")
    if cursor:
        try:
            found.after = decode_cursor(cursor)
            found.cursor = cursor
        except ValueError:
            found.errors["cursor"] = "That page link is not valid: start again from the first page"
    return found
