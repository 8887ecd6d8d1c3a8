"""POST /feedback/{provider}: providers' delivery events in; GET /feedback/unmatched."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Path, Query, Request

from mailroom.api.callers import LogsCaller
from mailroom.api.deps import Session, SettingsDep, State
from mailroom.api.errors import AUTH_RESPONSES, ErrorResponse
from mailroom.api.security import GuardedRoute
from mailroom.auth.scopes import Scope
from mailroom.errors import Forbidden
from mailroom.feedback import service
from mailroom.feedback.schemas import FeedbackReceived, UnmatchedPage

router = APIRouter(tags=["feedback"], route_class=GuardedRoute)


# First: the path /feedback/unmatched is its own, not a provider named "unmatched".
@router.get(
    "/feedback/unmatched",
    response_model=UnmatchedPage,
    summary="Reports that matched no email, newest first (admin keys)",
    responses={**AUTH_RESPONSES},
)
async def unmatched(
    session: Session,
    caller: LogsCaller,
    limit: Annotated[int, Query(ge=1, le=100, examples=[50])] = 50,
    cursor: Annotated[
        str | None,
        Query(
            max_length=200,
            description="The previous page's `nextCursor`",
            examples=["eyJ0IjoiMjAyNi0xMi0wNFQyMDowMDowMCswMDowMCIsImkiOjQyfQ"],
        ),
    ] = None,
) -> UnmatchedPage:
    """They belong to no project: a key with `logs:read` and `admin` reads them."""
    if not caller.has(Scope.ADMIN):
        raise Forbidden("Unmatched feedback belongs to no project: it needs the 'admin' scope.")
    return await service.list_unmatched(session, limit=limit, cursor=cursor)


@router.post(
    "/feedback/{provider}",
    response_model=FeedbackReceived,
    summary="A provider's bounce, complaint and delivery events",
    responses={
        400: {
            "model": ErrorResponse,
            "description": "The body is not JSON, or an SNS "
            "message is older than an hour (a replay)",
        },
        401: {"model": ErrorResponse, "description": "Wrong or missing token or signature"},
        404: {"model": ErrorResponse, "description": "Unknown provider, or not configured"},
        422: {
            "model": ErrorResponse,
            "description": "Not the provider's event shape, or an SNS message more than an "
            "hour old (a replay)",
        },
    },
)
async def receive(
    request: Request,
    settings: SettingsDep,
    state: State,
    provider: Annotated[
        str,
        Path(max_length=40, description="postmark, brevo, mailgun or ses", examples=["brevo"]),
    ],
    token: Annotated[
        str | None,
        Query(
            max_length=500,
            description="FEEDBACK_POSTMARK_TOKEN or FEEDBACK_BREVO_TOKEN (or Basic auth)",
            examples=["a-long-random-secret"],
        ),
    ] = None,
    authorization: Annotated[str | None, Header(include_in_schema=False)] = None,
) -> FeedbackReceived:
    """No API key: Postmark and Brevo authenticate with `?token=` or the Basic-auth
    password (FEEDBACK_POSTMARK_TOKEN, FEEDBACK_BREVO_TOKEN), Mailgun with its signature
    (FEEDBACK_MAILGUN_SIGNING_KEY), SES with SNS's signature (FEEDBACK_SES_TOPIC_ARNS).

    An event naming no email Mailroom sent is kept as unmatched and answered `200`: the
    provider would otherwise retry it for days."""
    return await service.receive_webhook(
        state.feedback,
        settings,
        provider,
        await request.body(),
        query_token=token,
        authorization=authorization,
        sns=state.sns,
    )
