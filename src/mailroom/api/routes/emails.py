"""POST /send, POST /send/batch and GET /emails/{id}."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Header, Path, Response, status

from mailroom.api.deps import RequestId, Session, SettingsDep, UoW
from mailroom.api.errors import AUTH_RESPONSES, ErrorResponse
from mailroom.api.security import GuardedRoute, LogsReader, SendCaller
from mailroom.emails import idempotency, service
from mailroom.emails.schemas import (
    EmailDetail,
    SendAccepted,
    SendBatchAccepted,
    SendBatchRequest,
    SendEmailRequest,
)
from mailroom.errors import NotFound

IdempotencyKeyHeader = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=idempotency.MAX_KEY_LENGTH,
        pattern=r"^[\x20-\x7e]+$",
        description="Retry-safe: the same key and body within 24 h return the first "
        "response (with `Idempotent-Replayed: true`) and send nothing again",
        examples=["order-1234-receipt"],
    ),
]

router = APIRouter(tags=["emails"])
# POST /send authenticates before its body is read (see GuardedRoute).
send_router = APIRouter(tags=["emails"], route_class=GuardedRoute)


@send_router.post(
    "/send",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=SendAccepted,
    summary="Queue an email for delivery",
    responses={
        400: {"model": ErrorResponse, "description": "The body is not JSON"},
        **AUTH_RESPONSES,
        413: {"model": ErrorResponse, "description": "The body is larger than MAX_BODY_BYTES"},
        422: {"model": ErrorResponse, "description": "A field is invalid; `details` names each"},
        429: {"model": ErrorResponse, "description": "Rate limited; see `Retry-After`"},
        503: {"model": ErrorResponse, "description": "The database is down; nothing was stored"},
    },
)
async def send(
    caller: SendCaller,
    body: SendEmailRequest,
    uow: UoW,
    settings: SettingsDep,
    request_id: RequestId,
    response: Response,
    idempotency_key: IdempotencyKeyHeader = None,
) -> SendAccepted:
    """Store the email and queue it; delivery happens in the background, with retries.

    The response comes once the email is committed to the log: from then on it is
    delivered or its failure is recorded. Follow it with `GET /emails/{id}`.
    """
    acceptance = await service.send_email(
        uow,
        body,
        settings=settings,
        request_id=request_id,
        api_key_id=caller.key_id,
        idempotency_key=idempotency_key,
    )
    if acceptance.replayed:
        response.headers["Idempotent-Replayed"] = "true"
    return acceptance.response


@send_router.post(
    "/send/batch",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=SendBatchAccepted,
    response_model_exclude_none=True,
    summary="Queue up to 500 emails in one request",
    responses={
        400: {"model": ErrorResponse, "description": "The body is not JSON"},
        **AUTH_RESPONSES,
        413: {
            "model": ErrorResponse,
            "description": "The body is larger than MAX_BATCH_BODY_BYTES",
        },
        422: {
            "model": ErrorResponse,
            "description": "Not a batch (`emails` missing, empty or over 500), or every "
            "email in it is invalid; `details` names each field",
        },
        429: {"model": ErrorResponse, "description": "Rate limited; see `Retry-After`"},
        503: {"model": ErrorResponse, "description": "The database is down; nothing was stored"},
    },
)
async def send_batch(
    caller: SendCaller,
    body: SendBatchRequest,
    uow: UoW,
    settings: SettingsDep,
    request_id: RequestId,
    response: Response,
    idempotency_key: IdempotencyKeyHeader = None,
) -> SendBatchAccepted:
    """Validate each email on its own, store the valid ones in one transaction, queue them.

    Answers 202 with one result per email, in order: `id` and `messageId` for each one
    queued, `error` (with `details`) for each one refused; the batch counts as one
    request against the rate limit. If no email in the batch is valid, nothing is
    stored and the answer is 422 listing every problem.
    """
    acceptance = await service.send_batch(
        uow,
        body.emails,
        settings=settings,
        request_id=request_id,
        api_key_id=caller.key_id,
        idempotency_key=idempotency_key,
    )
    if acceptance.replayed:
        response.headers["Idempotent-Replayed"] = "true"
    return acceptance.response


@router.get(
    "/emails/{email_id}",
    response_model=EmailDetail,
    summary="One email with its bodies and every delivery attempt",
    responses={**AUTH_RESPONSES, 404: {"model": ErrorResponse, "description": "No such email"}},
    dependencies=[LogsReader],
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
