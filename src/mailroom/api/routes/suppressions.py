"""GET/POST/DELETE /suppressions: the suppression list of the key's project."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, status

from mailroom.api.callers import LogsCaller, SuppressionsCaller
from mailroom.api.deps import Session, SettingsDep, UoW
from mailroom.api.errors import AUTH_RESPONSES, ErrorResponse
from mailroom.api.security import GuardedRoute
from mailroom.suppressions import service
from mailroom.suppressions.models import Reason
from mailroom.suppressions.schemas import (
    AddedSuppressions,
    AddSuppressions,
    SuppressionItem,
    SuppressionPage,
)

router = APIRouter(tags=["suppressions"], route_class=GuardedRoute)

Address = Annotated[
    str,
    Path(
        max_length=330,
        description="The address; its domain matches in any case, its local part exactly",
        examples=["jane@example.com"],
    ),
]
_NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorResponse, "description": "The address is not on the list"}
}


@router.get(
    "/suppressions",
    response_model=SuppressionPage,
    summary="The suppression list, newest first",
    responses={
        **AUTH_RESPONSES,
        422: {"model": ErrorResponse, "description": "A query parameter is invalid"},
    },
)
async def list_suppressions(
    session: Session,
    settings: SettingsDep,
    caller: LogsCaller,
    cursor: Annotated[
        str | None,
        Query(
            max_length=200,
            description="The previous page's `pagination.nextCursor`",
            examples=["eyJ0IjoiMjAyNi0xMi0wNFQyMDowMDowMCswMDowMCIsImkiOjQyfQ"],
        ),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=service.MAX_LIMIT, examples=[50])] = 50,
    reason: Annotated[Reason | None, Query(examples=["hard_bounce"])] = None,
    q: Annotated[
        str | None,
        Query(
            max_length=320,
            description="Addresses containing this, in any case",
            examples=["example.com"],
        ),
    ] = None,
) -> SuppressionPage:
    """The key's project's list (the shared one under SUPPRESSION_SCOPE=global); entries
    past their `expiresAt` are left out. Follow `pagination.nextCursor` with `cursor`."""
    return await service.list_page(
        session,
        settings,
        caller.project.id,
        now=datetime.now(UTC),
        limit=limit,
        cursor=cursor,
        reason=reason,
        q=q,
    )


@router.get(
    "/suppressions/{address}",
    response_model=SuppressionItem,
    summary="Whether an address is suppressed, and why",
    responses={**AUTH_RESPONSES, **_NOT_FOUND},
)
async def get_suppression(
    address: Address, session: Session, settings: SettingsDep, caller: LogsCaller
) -> SuppressionItem:
    return await service.get(session, settings, caller.project.id, address, datetime.now(UTC))


@router.post(
    "/suppressions",
    status_code=status.HTTP_201_CREATED,
    response_model=AddedSuppressions,
    summary="Suppress up to 1000 addresses",
    responses={
        400: {"model": ErrorResponse, "description": "The body is not JSON"},
        **AUTH_RESPONSES,
        422: {"model": ErrorResponse, "description": "An address or `expiresAt` is invalid"},
    },
)
async def add_suppressions(
    body: AddSuppressions, uow: UoW, settings: SettingsDep, caller: SuppressionsCaller
) -> AddedSuppressions:
    """Emails to these addresses are sent to the other recipients only, or stored
    `suppressed` when none is left. An address already suppressed for good keeps its
    entry; one with an `expiresAt` takes the new one. Needs `suppressions:write`."""
    return await service.add_manual(
        uow.session, settings, caller.project.id, body, datetime.now(UTC)
    )


@router.delete(
    "/suppressions/{address}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Take an address off the list",
    responses={**AUTH_RESPONSES, **_NOT_FOUND},
)
async def remove_suppression(
    address: Address, uow: UoW, settings: SettingsDep, caller: SuppressionsCaller
) -> None:
    """The next email to it is sent. Needs `suppressions:write`."""
    await service.remove(uow.session, settings, caller.project.id, address)
