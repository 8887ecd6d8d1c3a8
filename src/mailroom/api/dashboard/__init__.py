"""The web dashboard at /dashboard: server-rendered pages over the same use cases as the API.

signin   the sign-in form, sign-out, and ``Viewer`` (the session, re-checked every request)
session  the signed session cookie: a key's id, its expiry, a CSRF token, the time zone
pages    overview, the log, one email (its sandboxed body, Retry and Cancel), API keys
live     the log's live updates (server-sent events)
filters  the log page's filters, read from its URL
chart    the overview's chart, drawn as SVG on the server
nav      the menu: a feature adds its page with one line there
web      templates, static files (hashed URLs), the security headers
routes   ``install_dashboard``: mounts all of it on the API's app
"""
