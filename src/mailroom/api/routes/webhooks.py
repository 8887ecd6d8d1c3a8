"""The webhook routes: endpoints, secrets, tests, the deliveries log and replays.

Every one needs the `webhooks:write` scope and acts on the key's project's endpoints.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query, status
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException
from starlette.types import Receive, Scope, Send

from mailroom.api.callers import WebhooksCaller
from mailroom.api.deps import Session, SettingsDep, State, UoW
from mailroom.api.errors import AUTH_RESPONSES, ErrorResponse
from mailroom.api.security import GuardedRoute
from mailroom.errors import NotFound
from mailroom.webhooks import service
from mailroom.webhooks.schemas.requests import CreateWebhook, ReplayRequest, UpdateWebhook
from mailroom.webhooks.schemas.responses import (
    Replayed,
    RotatedSecret,
    Webhook,
    WebhookAttemptItem,
    WebhookAttemptPage,
    WebhookCreated,
    WebhookDeleted,
    WebhookList,
)


class _WebhookRoute(GuardedRoute):
    """A 405 names every method of the path in `Allow`, not only those of the first of its
    routes (Starlette's answer: one route per method here)."""

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.methods and scope["method"] not in self.methods:
            allowed = sorted(
                {
                    method
                    for route in router.routes
                    if isinstance(route, APIRoute) and route.path == self.path
                    for method in route.methods or ()
                }
            )
            raise HTTPException(status_code=405, headers={"Allow": ", ".join(allowed)})
        await super().handle(scope, receive, send)


router = APIRouter(tags=["webhooks"], route_class=_WebhookRoute)

WebhookId = Annotated[
    str,
    Path(
        description="The id POST /webhooks returned",
        examples=["8d2f7a4e-5b1c-4c3e-9f0a-2b6d1e4c7a90"],
    ),
]
_NOT_FOUND: dict[int | str, dict[str, Any]] = {
    **AUTH_RESPONSES,
    404: {"model": ErrorResponse, "description": "No such endpoint in the key's project"},
}
_INVALID: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorResponse, "description": "The body is not JSON"},
    422: {"model": ErrorResponse, "description": "A field is invalid; `details` says why"},
}


@dataclass(frozen=True)
class _Target:
    """The endpoint a route names, always looked up within the key's project: the use
    cases answer 404 for another project's endpoint exactly as for one that does not exist.
    """

    webhook_id: str
    project_id: uuid.UUID

    @property
    def id(self) -> uuid.UUID:
        # Parsed when the route uses it rather than in the dependency: FastAPI runs
        # dependencies before it validates the query and body, and a request whose body
        # is invalid too answers 422 before the 404.
        try:
            return uuid.UUID(self.webhook_id)
        except ValueError:
            raise NotFound(f"No webhook endpoint with id {self.webhook_id[:64]!r}") from None


def _target(webhook_id: WebhookId, caller: WebhooksCaller) -> _Target:
    return _Target(webhook_id, caller.project.id)


Target = Annotated[_Target, Depends(_target)]


@router.post(
    "/webhooks",
    status_code=status.HTTP_201_CREATED,
    response_model=WebhookCreated,
    summary="Add a webhook endpoint",
    responses={**AUTH_RESPONSES, **_INVALID},
)
async def create_webhook(
    body: CreateWebhook, uow: UoW, caller: WebhooksCaller, settings: SettingsDep
) -> WebhookCreated:
    """Events of the key's project (`events`, default all) are POSTed to `url`, signed as
    the Standard Webhooks specification says with the `secret` returned here (and only
    here: keep it). The URL must be https and reach a public address."""
    return await service.create(uow.session, body, project_id=caller.project.id, settings=settings)


@router.get(
    "/webhooks",
    response_model=WebhookList,
    summary="The project's webhook endpoints",
    responses=AUTH_RESPONSES,
)
async def list_webhooks(session: Session, caller: WebhooksCaller) -> WebhookList:
    return await service.list_endpoints(session, project_id=caller.project.id)


@router.get(
    "/webhooks/{webhook_id}", response_model=Webhook, summary="One endpoint", responses=_NOT_FOUND
)
async def get_webhook(target: Target, session: Session) -> Webhook:
    return await service.get(session, target.id, project_id=target.project_id)


@router.patch(
    "/webhooks/{webhook_id}",
    response_model=Webhook,
    summary="Change an endpoint's url, events, description or enabled",
    responses={**_NOT_FOUND, **_INVALID},
)
async def update_webhook(
    target: Target,
    body: UpdateWebhook,
    uow: UoW,
    settings: SettingsDep,
) -> Webhook:
    """`enabled: true` resumes a disabled endpoint: its deliveries still pending go out."""
    return await service.update(
        uow.session, target.id, body, project_id=target.project_id, settings=settings
    )


@router.delete(
    "/webhooks/{webhook_id}",
    response_model=WebhookDeleted,
    summary="Delete an endpoint, with its deliveries log",
    responses=_NOT_FOUND,
)
async def delete_webhook(target: Target, uow: UoW) -> WebhookDeleted:
    return await service.delete(uow.session, target.id, project_id=target.project_id)


@router.post(
    "/webhooks/{webhook_id}/rotate-secret",
    response_model=RotatedSecret,
    summary="Replace the endpoint's signing secret",
    responses={**_NOT_FOUND, **_INVALID},
)
async def rotate_secret(
    target: Target,
    uow: UoW,
    settings: SettingsDep,
    expire_old_now: Annotated[
        bool,
        Query(
            alias="expireOldNow",
            description="true: stop signing with the old secret at once",
            examples=[True],
        ),
    ] = False,
) -> RotatedSecret:
    """For WEBHOOK_SECRET_OVERLAP (default 24 h) each request carries two signatures in
    `webhook-signature`, by the old secret and the new one, so a receiver can switch
    secrets without missing an event."""
    return await service.rotate_secret(
        uow.session,
        target.id,
        project_id=target.project_id,
        settings=settings,
        expire_old_now=expire_old_now,
    )


@router.post(
    "/webhooks/{webhook_id}/test",
    response_model=WebhookAttemptItem,
    summary="Send a webhook.test event now",
    responses={
        **_NOT_FOUND,
        409: {"model": ErrorResponse, "description": "The endpoint is disabled"},
    },
)
async def test_webhook(target: Target, state: State, settings: SettingsDep) -> WebhookAttemptItem:
    """Answers with the attempt: `status`, `responseCode`, `responseBody`, `error`."""
    return await service.send_test(
        state.sessions, target.id, project_id=target.project_id, settings=settings
    )


@router.get(
    "/webhooks/{webhook_id}/deliveries",
    response_model=WebhookAttemptPage,
    summary="Every attempt to deliver to this endpoint, newest first",
    responses={**_NOT_FOUND, **_INVALID},
)
async def list_deliveries(
    target: Target,
    session: Session,
    cursor: Annotated[
        str | None,
        Query(
            max_length=200,
            description="The previous page's nextCursor",
            examples=["eyJ0IjoiMjAyNi0xMi0wNFQxMDowMDowMCswMDowMCIsImkiOjQyfQ"],
        ),
    ] = None,
    status_: Annotated[
        Literal["succeeded", "failed", "pending"] | None,
        Query(alias="status", examples=["failed"]),
    ] = None,
    event_type: Annotated[
        str | None, Query(alias="eventType", max_length=64, examples=["email.sent"])
    ] = None,
    limit: Annotated[int, Query(ge=1, le=100, examples=[50])] = 50,
) -> WebhookAttemptPage:
    """`status` `pending`: the attempt failed and another comes at `nextAttemptAt`."""
    return await service.deliveries(
        session,
        target.id,
        project_id=target.project_id,
        cursor=cursor,
        status=status_,
        event_type=event_type,
        limit=limit,
    )


@router.post(
    "/webhooks/{webhook_id}/replay",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=Replayed,
    summary="Send events again",
    responses={**_NOT_FOUND, **_INVALID},
)
async def replay(target: Target, body: ReplayRequest, uow: UoW) -> Replayed:
    """The events named (`eventIds`) or that happened in `[since, until)`: each is sent
    again with the same `webhook-id`, a new timestamp and signature (at most 10,000)."""
    return await service.replay(uow.session, target.id, body, project_id=target.project_id)
