"""Use cases of the webhook routes and CLI: endpoints, secrets, tests, the log, replays.

Every one acts on one project's endpoints (the caller's): another project's endpoint is
a 404 exactly like one that does not exist.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from datetime import UTC, datetime, timedelta
from typing import Literal, cast

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from mailroom.errors import Conflict, InvalidRequest, NotFound
from mailroom.settings import Settings
from mailroom.webhooks import deliveries_repository, log_repository, repository, signing, ssrf
from mailroom.webhooks.delivery import deliver
from mailroom.webhooks.events import EMAIL_EVENT_TYPES, TEST_EVENT_TYPE, emit
from mailroom.webhooks.models import WebhookAttempt, WebhookEndpoint
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
from mailroom.webhooks.sender import HttpSender

AttemptStatus = Literal["succeeded", "failed", "pending"]
MAX_REPLAY = 10_000  # deliveries one replay request creates at most
_RESOLVE_TIMEOUT = 3.0


def view(endpoint: WebhookEndpoint) -> Webhook:
    return Webhook(
        id=endpoint.id,
        url=endpoint.url,
        events=endpoint.events,
        description=endpoint.description,
        enabled=endpoint.enabled,
        disabled_reason=endpoint.disabled_reason,
        created_at=endpoint.created_at,
    )


async def check_url(url: str, settings: Settings) -> str:
    """The URL if a webhook may go there; a 422 naming the reason otherwise.

    A host name is resolved too: one that resolves to an internal address is refused now
    (it would be refused at every send). One that does not resolve yet is accepted.
    """

    def refused(reason: str) -> InvalidRequest:
        return InvalidRequest(
            f"Invalid request. url: {reason}", details=[{"field": "url", "message": reason}]
        )

    try:
        parts = ssrf.check_url(
            url,
            allow_http=settings.webhook_allow_http,
            allow_private=settings.webhook_allow_private,
        )
        if not settings.webhook_allow_private:
            host = parts.hostname or ""
            try:
                async with asyncio.timeout(_RESOLVE_TIMEOUT):
                    addresses = await ssrf.resolve(host, parts.port or 443)
            except (OSError, TimeoutError):
                addresses = []
            for address in addresses:
                reason = ssrf.refused_address(address, allow_private=False)
                if reason is not None:
                    raise ssrf.RefusedDestination(reason)
    except ssrf.RefusedDestination as exc:
        raise refused(str(exc)) from None
    return url


async def create(
    session: AsyncSession, body: CreateWebhook, *, project_id: uuid.UUID, settings: Settings
) -> WebhookCreated:
    url = await check_url(body.url, settings)
    if await repository.count(session, project_id) >= settings.webhook_max_endpoints:
        raise InvalidRequest(
            f"This project has {settings.webhook_max_endpoints} webhook endpoints, the most "
            "WEBHOOK_MAX_ENDPOINTS allows; delete one first."
        )
    endpoint = WebhookEndpoint(
        id=uuid.uuid4(),
        project_id=project_id,
        url=url,
        events=body.events or list(EMAIL_EVENT_TYPES),
        description=body.description,
        enabled=True,
        secret=signing.new_secret(),
    )
    await repository.add(session, endpoint)
    await session.refresh(endpoint)
    return WebhookCreated(**view(endpoint).model_dump(), secret=endpoint.secret)


async def list_endpoints(session: AsyncSession, *, project_id: uuid.UUID) -> WebhookList:
    return WebhookList(data=[view(e) for e in await repository.list_all(session, project_id)])


async def _found(
    session: AsyncSession, endpoint_id: uuid.UUID, project_id: uuid.UUID
) -> WebhookEndpoint:
    endpoint = await repository.get(session, endpoint_id, project_id)
    if endpoint is None:
        raise NotFound(f"No webhook endpoint with id {endpoint_id}")
    return endpoint


async def get(session: AsyncSession, endpoint_id: uuid.UUID, *, project_id: uuid.UUID) -> Webhook:
    return view(await _found(session, endpoint_id, project_id))


async def update(
    session: AsyncSession,
    endpoint_id: uuid.UUID,
    body: UpdateWebhook,
    *,
    project_id: uuid.UUID,
    settings: Settings,
) -> Webhook:
    values: dict[str, object] = {}
    if body.url is not None:
        values["url"] = await check_url(body.url, settings)
    if body.events is not None:
        values["events"] = body.events
    if "description" in body.model_fields_set:
        values["description"] = body.description
    if body.enabled is not None:
        values["enabled"] = body.enabled
        if body.enabled:  # a fresh start: the failures so far no longer count
            values["disabled_reason"] = None
            values["failing_since"] = None
    if not values:
        return await get(session, endpoint_id, project_id=project_id)
    changed = await repository.change(session, endpoint_id, project_id, **values)
    if changed is None:
        raise NotFound(f"No webhook endpoint with id {endpoint_id}")
    return view(changed)


async def delete(
    session: AsyncSession, endpoint_id: uuid.UUID, *, project_id: uuid.UUID
) -> WebhookDeleted:
    if not await repository.remove(session, endpoint_id, project_id):
        raise NotFound(f"No webhook endpoint with id {endpoint_id}")
    return WebhookDeleted(id=endpoint_id)


async def rotate_secret(
    session: AsyncSession,
    endpoint_id: uuid.UUID,
    *,
    project_id: uuid.UUID,
    settings: Settings,
    expire_old_now: bool,
) -> RotatedSecret:
    """A new secret; the old one keeps signing too for WEBHOOK_SECRET_OVERLAP."""
    secret = signing.new_secret()
    overlap = settings.webhook_secret_overlap
    until = (
        None if expire_old_now or overlap == 0 else datetime.now(UTC) + timedelta(seconds=overlap)
    )
    if (
        await repository.rotate(
            session, endpoint_id, project_id, secret=secret, previous_until=until
        )
        is None
    ):
        raise NotFound(f"No webhook endpoint with id {endpoint_id}")
    return RotatedSecret(secret=secret)


def attempt_item(a: WebhookAttempt) -> WebhookAttemptItem:
    return WebhookAttemptItem(
        event_id=a.event_id,
        event_type=a.event_type,
        attempt=a.attempt,
        status=cast(AttemptStatus, a.status),  # the table's check constraint holds it
        response_code=a.response_code,
        duration_ms=a.duration_ms,
        response_body=a.response_body,
        error=a.error,
        created_at=a.created_at,
        next_attempt_at=a.next_attempt_at,
    )


async def send_test(
    sessions: async_sessionmaker[AsyncSession],
    endpoint_id: uuid.UUID,
    *,
    project_id: uuid.UUID,
    settings: Settings,
) -> WebhookAttemptItem:
    """Send a `webhook.test` event now and return the attempt (retried like any other if
    it failed)."""
    async with sessions() as session:
        endpoint = await _found(session, endpoint_id, project_id)
        if not endpoint.enabled:
            raise Conflict(f"The endpoint is disabled ({endpoint.disabled_reason or 'by a user'}).")
        event_id = await emit(
            session,
            email_id=None,
            project_id=project_id,
            type=TEST_EVENT_TYPE,
            data={"webhookId": str(endpoint_id), "message": "A test event from Mailroom."},
        )
        delivery_id = await deliveries_repository.add_delivery(session, endpoint_id, event_id)
        await session.commit()
    sender = HttpSender(
        timeout=settings.webhook_timeout,
        allow_http=settings.webhook_allow_http,
        allow_private=settings.webhook_allow_private,
        max_connections=1,
    )
    try:
        done = await deliver(
            sessions, [delivery_id], sender=sender, settings=settings, rng=random.Random()
        )
    finally:
        await sender.aclose()
    if not done:
        raise Conflict("The test delivery was taken by a worker; see the deliveries log.")
    async with sessions() as session:
        found = await log_repository.attempts(
            session, endpoint_id, after=None, status=None, event_type=TEST_EVENT_TYPE, limit=1
        )
    return attempt_item(found[0])


async def deliveries(
    session: AsyncSession,
    endpoint_id: uuid.UUID,
    *,
    project_id: uuid.UUID,
    cursor: str | None,
    status: str | None,
    event_type: str | None,
    limit: int,
) -> WebhookAttemptPage:
    await _found(session, endpoint_id, project_id)
    after = None
    if cursor is not None:
        try:
            after = log_repository.decode_cursor(cursor)
        except ValueError as exc:
            raise InvalidRequest(
                f"Invalid request. cursor: {exc}",
                details=[{"field": "cursor", "message": str(exc)}],
            ) from None
    found = await log_repository.attempts(
        session, endpoint_id, after=after, status=status, event_type=event_type, limit=limit + 1
    )
    page = found[:limit]
    more = len(found) > limit
    next_cursor = (
        log_repository.encode_cursor(log_repository.Position(page[-1].created_at, page[-1].id))
        if more
        else None
    )
    return WebhookAttemptPage(
        data=[attempt_item(a) for a in page], has_more=more, next_cursor=next_cursor
    )


async def replay(
    session: AsyncSession, endpoint_id: uuid.UUID, body: ReplayRequest, *, project_id: uuid.UUID
) -> Replayed:
    """Each chosen event again (same webhook-id, new timestamp and signature)."""
    await _found(session, endpoint_id, project_id)
    if body.event_ids is None and body.since is None and body.until is None:
        raise InvalidRequest(
            "Invalid request. Give eventIds, or since and/or until.",
            details=[{"field": "eventIds", "message": "give eventIds, since or until"}],
        )
    if body.since and body.until and body.since >= body.until:
        raise InvalidRequest(
            "Invalid request. until: must be after since",
            details=[{"field": "until", "message": "must be after since"}],
        )
    added = await deliveries_repository.replay(
        session,
        endpoint_id,
        event_ids=body.event_ids,
        since=body.since,
        until=body.until,
        limit=MAX_REPLAY,
    )
    return Replayed(replayed=len(added))


async def replay_failed(
    session: AsyncSession, endpoint_id: uuid.UUID, *, project_id: uuid.UUID, limit: int
) -> Replayed:
    """The events whose deliveries failed for good, among the newest ``limit`` failures,
    each sent again once (an event that failed several times is replayed once)."""
    failed = await deliveries(
        session,
        endpoint_id,
        project_id=project_id,
        cursor=None,
        status="failed",
        event_type=None,
        limit=limit,
    )
    event_ids = list(dict.fromkeys(a.event_id for a in failed.data))
    if not event_ids:
        return Replayed(replayed=0)
    return await replay(
        session, endpoint_id, ReplayRequest(event_ids=event_ids), project_id=project_id
    )
