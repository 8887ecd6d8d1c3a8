"""The probes behind `mailroom health`, the container health check.

The API's probe asks the server in this container for GET /health; the worker's reads the
age of the heartbeat file a running worker touches every few seconds (see
`mailroom.worker.runner.heartbeat`). Each returns None when healthy, otherwise a one-line
reason. Neither looks at PostgreSQL or Redis: an outage there is GET /ready's business, and
restarting a healthy process would not fix it.
"""

from __future__ import annotations

import http.client
import time
import urllib.request
from pathlib import Path

API_TIMEOUT = 3.0
HEARTBEAT_MAX_AGE = 30.0

# No ProxyHandler settings: an HTTP_PROXY in the environment must not reroute a loopback probe.
_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def check_api(host: str, port: int, *, timeout: float = API_TIMEOUT) -> str | None:
    """None when http://host:port/health answers 200 within `timeout` seconds."""
    netloc = f"[{host}]" if ":" in host else host
    url = f"http://{netloc}:{port}/health"
    try:
        with _opener.open(url, timeout=timeout) as response:
            status: int = response.status
    except (OSError, http.client.HTTPException) as exc:  # refused, timed out, HTTP errors
        return f"GET {url}: {exc}"
    return None if status == 200 else f"GET {url}: HTTP {status}"


def check_heartbeat(
    path: Path, *, max_age: float = HEARTBEAT_MAX_AGE, now: float | None = None
) -> str | None:
    """None when `path` was touched less than `max_age` seconds ago."""
    try:
        modified = path.stat().st_mtime
    except FileNotFoundError:
        return f"{path} does not exist: no worker is running here"
    except OSError as exc:
        return f"{path}: {exc}"
    age = (time.time() if now is None else now) - modified
    if age > max_age:
        return f"{path} is {age:.0f} s old (limit {max_age:g} s): the worker is stuck or stopped"
    return None
