"""POST /send, POST /send/batch and GET /emails/{id}."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Header, Path, Query, Request, Response, status

from mailroom.api.callers import EmailsCaller, LogsCaller
from mailroom.api.context import request_context
from mailroom.api.deps import RequestId, Session, SettingsDep, State, UoW
from mailroom.api.errors import AUTH_RESPONSES, ErrorResponse
from mailroom.api.security import GuardedRoute, SendCaller
from mailroom.auth.scopes import Scope
from mailroom.emails import accepting, idempotency, log, operations
from mailroom.emails.schemas.requests import RequeueRequest, SendBatchRequest, SendEmailRequest
from mailroom.emails.schemas.responses import (
    EmailDetail,
    EmailLogItem,
    RequeueResult,
    SendAccepted,
    SendBatchAccepted,
)
from mailroom.emails.suppression_check import check_may_ignore
from mailroom.errors import NotFound
from mailroom.projects.names import MAX_NAME_LENGTH, NAME_PATTERN

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

SandboxHeader = Annotated[
    bool,
    Header(
        alias="X-Sandbox",
        description="`true`: store, log and move the email through its statuses, but make "
        "no SMTP connection (it ends `sent` with `sandbox: true`). A sandbox key always "
        "does this.",
        examples=[True],
    ),
]

# Every route authenticates before its body is read (see GuardedRoute).
router = APIRouter(tags=["emails"], route_class=GuardedRoute)
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
    request: Request,
    caller: SendCaller,
    body: SendEmailRequest,
    settings: SettingsDep,
    request_id: RequestId,
    response: Response,
    state: State,
    idempotency_key: IdempotencyKeyHeader = None,
    sandbox: SandboxHeader = False,
) -> SendAccepted:
    """Store the email and queue it; delivery happens in the background, with retries.

    The response comes once the email is committed to the log: from then on it is
    delivered or its failure is recorded. Follow it with `GET /emails/{id}`.
    """
    check_may_ignore(body, allowed=caller.has(Scope.SUPPRESSIONS_WRITE))
    acceptance = await accepting.send_email(
        state.intake,
        body,
        settings=settings,
        request_id=request_id,
        api_key_id=caller.key_id,
        project_id=caller.project.id,
        idempotency_key=idempotency_key,
        sandbox=sandbox or caller.sandbox,
    )
    _answered(request, response, replayed=acceptance.replayed, accepted=1)
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
    request: Request,
    caller: SendCaller,
    body: SendBatchRequest,
    uow: UoW,
    settings: SettingsDep,
    request_id: RequestId,
    response: Response,
    idempotency_key: IdempotencyKeyHeader = None,
    sandbox: SandboxHeader = False,
) -> SendBatchAccepted:
    """Validate each email on its own, store the valid ones in one transaction, queue them.

    Answers 202 with one result per email, in order: `id` and `messageId` for each one
    queued, `error` (with `details`) for each one refused; the batch counts as one
    request against the rate limit. If no email in the batch is valid, nothing is
    stored and the answer is 422 listing every problem.
    """
    acceptance = await accepting.send_batch(
        uow,
        body.emails,
        settings=settings,
        request_id=request_id,
        api_key_id=caller.key_id,
        project_id=caller.project.id,
        idempotency_key=idempotency_key,
        sandbox=sandbox or caller.sandbox,
        may_ignore_suppressions=caller.has(Scope.SUPPRESSIONS_WRITE),
    )
    _answered(
        request, response, replayed=acceptance.replayed, accepted=acceptance.response.accepted
    )
    return acceptance.response


def _answered(request: Request, response: Response, *, replayed: bool, accepted: int) -> None:
    """Mark a replay for the client; otherwise note the emails stored, for the metrics."""
    if replayed:
        response.headers["Idempotent-Replayed"] = "true"
    else:
        request_context(request.scope).emails_accepted = accepted


EmailId = Annotated[
    str,
    Path(
        description="The id POST /send returned",
        examples=["5b0c1c2a-0b1d-45f5-9b8c-bc0d9b1a6f6d"],
    ),
]
_NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {
        "model": ErrorResponse,
        "description": "No such email, or it belongs to a project the key does not reach",
    }
}
_WRITE_RESPONSES: dict[int | str, dict[str, Any]] = {
    **AUTH_RESPONSES,
    **_NOT_FOUND,
    409: {"model": ErrorResponse, "description": "Its status does not allow this"},
}
ProjectParameter = Annotated[
    str | None,
    Query(
        max_length=MAX_NAME_LENGTH,
        pattern=NAME_PATTERN,
        description="Only this project's emails. A key acts only on its own project's "
        "emails; a key with the `admin` scope on every project's unless it names one here. "
        "Naming another project with a key without `admin` is a 403.",
        examples=["billing"],
    ),
]


def _parse_id(email_id: str) -> uuid.UUID:
    try:
        return uuid.UUID(email_id)
    except ValueError:
        raise NotFound(f"No email with id {email_id[:64]!r}") from None


@router.post(
    "/emails/{email_id}/retry",
    response_model=EmailLogItem,
    summary="Send a failed email again",
    responses=_WRITE_RESPONSES,
)
async def retry_email(email_id: EmailId, uow: UoW, caller: EmailsCaller) -> EmailLogItem:
    """A `failed` email goes back to `queued`, with a fresh budget of MAX_ATTEMPTS.

    Its attempts so far stay in its history and the new ones continue their numbering;
    the Message-ID stays the same. Any other status is a `409`.
    """
    return await operations.retry_email(uow, _parse_id(email_id), access=caller.access)


@router.post(
    "/emails/{email_id}/cancel",
    response_model=EmailLogItem,
    summary="Cancel an email that has not been sent",
    responses=_WRITE_RESPONSES,
)
async def cancel_email(email_id: EmailId, uow: UoW, caller: EmailsCaller) -> EmailLogItem:
    """A `scheduled`, `queued` or `retrying` email becomes `cancelled` and is never sent.

    An email being sent right now (`sending`), or already `sent` or `failed`, is a `409`.
    """
    return await operations.cancel_email(uow, _parse_id(email_id), access=caller.access)


@router.post(
    "/emails/requeue",
    response_model=RequeueResult,
    summary="Send failed emails again, chosen by filters",
    responses={
        400: {"model": ErrorResponse, "description": "The body is not JSON"},
        **AUTH_RESPONSES,
        403: {
            "model": ErrorResponse,
            "description": "The key lacks `emails:write`, or names another project without `admin`",
        },
        404: {"model": ErrorResponse, "description": "An admin key named no existing project"},
        422: {"model": ErrorResponse, "description": "A filter is invalid"},
    },
)
async def requeue(
    body: RequeueRequest, state: State, caller: EmailsCaller, project: ProjectParameter = None
) -> RequeueResult:
    """Requeue the `failed` emails the filters select (oldest first, up to `limit`).

    Only the key's project's emails; a key with the `admin` scope requeues every
    project's, or the one `project` names. `dryRun: true` only counts them. Otherwise
    they are requeued in transactions of 500, each dispatched once committed; `hasMore`
    says whether more matched than `limit`.
    """
    return await operations.requeue_failed(
        state.sessions, state.dispatcher.dispatch, body, access=caller.access, project=project
    )


# Last: /emails/{email_id} would otherwise answer for /emails/requeue's other methods.
@router.get(
    "/emails/{email_id}",
    response_model=EmailDetail,
    summary="One email with its bodies and every delivery attempt",
    responses={**AUTH_RESPONSES, **_NOT_FOUND},
)
async def get_email(email_id: EmailId, session: Session, caller: LogsCaller) -> EmailDetail:
    """Only an email of the key's project (any project's for a key with `admin`): any
    other is a `404`, exactly as one that does not exist."""
    return await log.get_email(session, _parse_id(email_id), access=caller.access)
