"""GET /metrics: the API's Prometheus metrics, for a key with the metrics:read scope."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter
from fastapi.responses import PlainTextResponse

from mailroom.api.deps import State
from mailroom.api.errors import AUTH_RESPONSES
from mailroom.api.security import GuardedRoute, MetricsReader
from mailroom.metrics.collectors import queue_depth
from mailroom.metrics.registry import API_REGISTRY, CONTENT_TYPE, multiprocess_dir, render

router = APIRouter(tags=["metrics"], dependencies=[MetricsReader], route_class=GuardedRoute)

# Errors are JSON as everywhere else; with a "model", FastAPI would file them under this
# route's text/plain instead.
_JSON_ERROR = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorResponse"}}}

_DESCRIPTION = """Prometheus text format (version 0.0.4). Scrape it with a key holding the
`metrics:read` scope, sent as `Authorization: Bearer <key>`.

- `mailroom_http_requests_total`, `mailroom_http_request_duration_seconds`: by `method`,
  `route` (the route's template, e.g. `/emails/{email_id}`; `unmatched` for unknown paths)
  and `status`.
- `mailroom_emails_accepted_total`: by `endpoint` (`single`, `batch`); replays not counted.
- `mailroom_emails`: emails present in each `status`, from PostgreSQL.
- `mailroom_queue_jobs`: BullMQ jobs by `state` (`waiting`, `active`, `delayed`).
- `mailroom_metrics_source_up`: whether the scrape could read each `source`.

Under `mailroom api --processes N` the counters and histograms are totals over every
process, whichever one answers. The worker's delivery metrics are served by the worker
(WORKER_METRICS_PORT)."""


@router.get(
    "/metrics",
    response_class=PlainTextResponse,
    summary="Prometheus metrics of the API, the log and the queue",
    description=_DESCRIPTION,
    responses={
        200: {
            "description": "The metrics, in Prometheus' text exposition format",
            "content": {"text/plain": {"example": 'mailroom_emails{status="queued"} 2.0\n'}},
        },
        **{
            status: {"description": response["description"], "content": _JSON_ERROR}
            for status, response in AUTH_RESPONSES.items()
        },
    },
)
async def metrics(state: State) -> PlainTextResponse:
    families = await queue_depth(state.sessions, state.dispatcher.queue)
    # Generating the text reads the other processes' files in multi-process mode.
    body = await asyncio.to_thread(
        render, API_REGISTRY, families, multiprocess_path=multiprocess_dir()
    )
    return PlainTextResponse(body, media_type=CONTENT_TYPE)
