"""POST /send and GET /emails/{id}."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Path, status

from mailroom.api.deps import RequestId, Session, SettingsDep, UoW
from mailroom.api.errors import ErrorResponse
from mailroom.emails import service
from mailroom.emails.schemas import EmailDetail, SendAccepted, SendEmailRequest
from mailroom.errors import NotFound

router = APIRouter(tags=["emails"])


@router.post(
    "/send",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=SendAccepted,
    summary="Queue an email for delivery",
    responses={
        400: {"model": ErrorResponse, "description": "The body is not JSON"},
        422: {"model": ErrorResponse, "description": "A field is invalid; `details` names each"},
        503: {"model": ErrorResponse, "description": "The database is down; nothing was stored"},
    },
)
async def send(
    body: SendEmailRequest, uow: UoW, settings: SettingsDep, request_id: RequestId
) -> SendAccepted:
    """Store the email and queue it; delivery happens in the background, with retries.

    The response comes once the email is committed to the log: from then on it is
    delivered or its failure is recorded. Follow it with `GET /emails/{id}`.
    """
    email = await service.accept_email(uow, body, settings=settings, request_id=request_id)
    return SendAccepted(
        id=email.id, status=email.status, message_id=email.message_id, created_at=email.created_at
    )


@router.get(
    "/emails/{email_id}",
    response_model=EmailDetail,
    summary="One email with its bodies and every delivery attempt",
    responses={404: {"model": ErrorResponse, "description": "No such email"}},
)
async def get_email(
    email_id: Annotated[
        str,
        Path(
            description="The id POST /send returned",
            examples=["5b0c1c2a-0b1d-45f5-9b8c-bc0d9b1a6f6d"],
        ),
    ],
    session: Session,
) -> EmailDetail:
    try:
        parsed = uuid.UUID(email_id)
    except ValueError:
        raise NotFound(f"No email with id {email_id[:64]!r}") from None
    return await service.get_email(session, parsed)
