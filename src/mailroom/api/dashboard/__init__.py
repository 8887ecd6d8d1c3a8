"""The web dashboard at /dashboard: server-rendered pages over the same use cases as the API.

Sign in with an API key (``signin``; the session cookie holds the key's id, re-checked on
every request, so revoking the key ends the session), then: the overview (``overview``),
the log with live updates (``emails``, ``live``), one email with its attempts and actions,
and the API keys (``pages``). ``nav`` lists the pages of the menu; a feature adds its page
there. ``web`` renders templates, serves the static files and sets the security headers.
``routes.install_dashboard`` mounts all of it on the API's app.
"""
