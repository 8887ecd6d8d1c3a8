"""Dependencies, as ``Annotated`` aliases the routes declare by type."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from asgi_correlation_id import correlation_id
from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession

from mailroom.api.state import AppState
from mailroom.devinbox.store import Inbox
from mailroom.errors import NotFound
from mailroom.settings import Settings
from mailroom.unit_of_work import UnitOfWork, unit_of_work

# Every dependency is `async def`: FastAPI runs plain `def` ones in a thread pool, a
# thread hop per dependency per request (measured: the API's largest single cost).


def state_of(request: Request) -> AppState:
    state: AppState = request.app.state.mailroom
    return state


async def get_state(request: Request) -> AppState:
    return state_of(request)


State = Annotated[AppState, Depends(get_state)]


async def get_settings(state: State) -> Settings:
    return state.settings


SettingsDep = Annotated[Settings, Depends(get_settings)]


async def get_unit_of_work(state: State) -> AsyncIterator[UnitOfWork]:
    # scope="function" below: commit (and dispatch) before the response is sent, so a
    # 202 is only ever sent for an email that is stored.
    async with unit_of_work(state.sessions, state.dispatcher.dispatch) as uow:
        yield uow


UoW = Annotated[UnitOfWork, Depends(get_unit_of_work, scope="function")]


async def get_session(state: State) -> AsyncIterator[AsyncSession]:
    async with state.sessions() as session:
        yield session


Session = Annotated[AsyncSession, Depends(get_session, scope="function")]


async def get_request_id() -> str | None:
    return correlation_id.get()


RequestId = Annotated[str | None, Depends(get_request_id)]


async def get_inbox(state: State) -> Inbox:
    if state.inbox is None:
        raise NotFound("The development inbox runs only under `mailroom dev` without SMTP_HOST")
    return state.inbox


InboxDep = Annotated[Inbox, Depends(get_inbox)]
