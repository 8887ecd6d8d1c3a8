"""The API's metrics: requests by method, route template and status; emails accepted.

``RequestContextMiddleware`` hands each request's response messages to a
``RequestMetrics`` and tells it when the request is over. Routes are labelled by their
template (``/emails/{email_id}``), never by the path a client sent, and paths no route
serves share one label: a client cannot create series.

Emails are counted as accepted where the ``202`` leaves, which is after their
transaction committed (a failed commit is a ``503`` and counts nothing): the route
notes in the request's context how many it stored (none for an idempotent replay),
and this counts them once the answer is a ``202``.
"""

from __future__ import annotations

import re
from typing import Any
from weakref import WeakKeyDictionary

import structlog
from prometheus_client import Counter, Histogram
from starlette.routing import compile_path
from starlette.types import Message, Scope

from mailroom.api.context import request_context
from mailroom.metrics.registry import API_REGISTRY

log = structlog.get_logger(__name__)

UNMATCHED_ROUTE = "unmatched"  # the label of every path no route serves
OTHER_METHOD = "other"
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_ENDPOINTS = {"/send": "single", "/send/batch": "batch"}

_LABELS = ("method", "route", "status")
HTTP_REQUESTS = Counter(
    "mailroom_http_requests",
    "HTTP requests answered, by method, route template and status code",
    _LABELS,
    registry=API_REGISTRY,
)
HTTP_REQUEST_DURATION = Histogram(
    "mailroom_http_request_duration_seconds",
    "Time from a request's arrival to the end of its response, by method, route template "
    "and status code",
    _LABELS,
    registry=API_REGISTRY,
)
EMAILS_ACCEPTED = Counter(
    "mailroom_emails_accepted",
    "Emails accepted (stored and queued) by endpoint: single (POST /send) or batch "
    "(POST /send/batch); idempotent replays are not counted",
    ("endpoint",),
    registry=API_REGISTRY,
)
for _endpoint in ("single", "batch"):
    EMAILS_ACCEPTED.labels(_endpoint)


def route_template(scope: Scope) -> str:
    """The template of the route that served (or would serve) this request."""
    path = getattr(scope.get("route"), "path", None)  # set by the router once it matched
    if isinstance(path, str) and path:
        return path
    # Answered before routing (a 413 from the body limit) or by no route at all (a 404).
    route_path = scope["path"]
    root_path = scope.get("root_path", "")
    if root_path and route_path.startswith(root_path):
        route_path = route_path[len(root_path) :]
    for pattern, template in _published_templates(scope.get("app")):
        if pattern.match(route_path):
            return template
    return UNMATCHED_ROUTE


_TEMPLATES: WeakKeyDictionary[Any, list[tuple[re.Pattern[str], str]]] = WeakKeyDictionary()


def _published_templates(app: Any) -> list[tuple[re.Pattern[str], str]]:
    """The app's path templates as the OpenAPI document publishes them, fixed ones first
    (``/emails/requeue`` before ``/emails/{email_id}``); built once per app."""
    if app is None:
        return []
    templates = _TEMPLATES.get(app)
    if templates is None:
        openapi = getattr(app, "openapi", None)
        try:
            paths = list(openapi()["paths"]) if callable(openapi) else []
        except Exception:
            log.warning("metrics.no_route_templates", exc_info=True)
            paths = []
        ordered = sorted(paths, key=lambda template: template.count("{"))
        templates = _TEMPLATES[app] = [(compile_path(t)[0], t) for t in ordered]
    return templates


class RequestMetrics:
    """What one request adds to the metrics: fed each message sent, then ``finished``."""

    __slots__ = ("_scope", "_status")

    def __init__(self, scope: Scope) -> None:
        self._scope = scope
        self._status = 500  # if the application fails before it answers

    def sent(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self._status = int(message["status"])

    def finished(self, seconds: float) -> None:
        method = self._scope["method"] if self._scope["method"] in _METHODS else OTHER_METHOD
        route = route_template(self._scope)
        status = str(self._status)
        HTTP_REQUESTS.labels(method, route, status).inc()
        HTTP_REQUEST_DURATION.labels(method, route, status).observe(seconds)
        accepted = request_context(self._scope).emails_accepted
        if self._status == 202 and accepted and route in _ENDPOINTS:
            EMAILS_ACCEPTED.labels(_ENDPOINTS[route]).inc(accepted)
