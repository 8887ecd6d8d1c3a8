"""The dashboard's menu: each page a feature adds is one ``NavItem`` in ``NAV``.

An item shows only to a session whose key holds its scope (and the page itself checks
the same scope). A feature adds its page by writing its routes and one line here.
"""

from __future__ import annotations

from dataclasses import dataclass

from mailroom.auth.scopes import Scope


@dataclass(frozen=True)
class NavItem:
    label: str
    path: str
    scope: Scope


NAV: list[NavItem] = [
    NavItem("Overview", "/dashboard", Scope.LOGS_READ),
    NavItem("Emails", "/dashboard/emails", Scope.LOGS_READ),
    NavItem("Suppressions", "/dashboard/suppressions", Scope.LOGS_READ),
    NavItem("API keys", "/dashboard/keys", Scope.LOGS_READ),
    NavItem("Webhooks", "/dashboard/webhooks", Scope.WEBHOOKS_WRITE),
    NavItem("Providers", "/dashboard/providers", Scope.LOGS_READ),
]
