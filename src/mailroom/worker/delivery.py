"""One delivery job: claim the email, send it once, record the attempt, move the email on."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import TypeVar

import structlog
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from mailroom.emails import service
from mailroom.emails.message import build_message, envelope_addresses
from mailroom.emails.repository import Claimed
from mailroom.emails.retry import Decision
from mailroom.log_config import mask_address
from mailroom.queue.dispatcher import Dispatcher
from mailroom.queue.jobs import DeliveryJob
from mailroom.settings import Settings
from mailroom.transport.base import Envelope, MailTransport, Outcome, SendResult
from mailroom.unit_of_work import unit_of_work

log = structlog.get_logger(__name__)
T = TypeVar("T")

_INTERRUPTED = SendResult(
    outcome=Outcome.INTERRUPTED,
    code=None,
    message=(
        "The worker shut down during this attempt; "
        "the server may or may not have accepted the message."
    ),
)


def _now() -> datetime:
    return datetime.now(UTC)


class Deliverer:
    def __init__(
        self,
        *,
        sessions: async_sessionmaker[AsyncSession],
        dispatcher: Dispatcher,
        transport: MailTransport,
        settings: Settings,
        rng: random.Random | None = None,
    ) -> None:
        self._sessions = sessions
        self._dispatcher = dispatcher
        self._transport = transport
        self._settings = settings
        self._rng = rng or random.Random()

    async def deliver(self, job: DeliveryJob) -> str:
        """Run one job; returns what became of it (a short label for BullMQ's result)."""
        with structlog.contextvars.bound_contextvars(
            email_id=str(job.email_id), request_id=job.request_id, attempt=job.attempt
        ):
            claiming = asyncio.ensure_future(self._claim(job))
            try:
                claimed = await asyncio.shield(claiming)
            except asyncio.CancelledError:
                # Stopped while claiming: finish the claim (a short transaction) and
                # hand the email straight back, rather than leave it leased.
                claimed = await claiming
                if claimed is not None:
                    await self._record(claimed, _INTERRUPTED, _now())
                raise
            if claimed is None:
                # Finished, owned by another worker, or not due yet: a duplicate job.
                log.debug("email.claim_skipped")
                return "skipped"
            if claimed.reclaimed:
                log.warning("email.reclaimed", attempt=claimed.attempt)
            started = _now()
            try:
                result = await self._send(claimed)
            except asyncio.CancelledError:
                # Shutting down mid-send: log the attempt as interrupted and hand the
                # email back for a retry rather than leave it until its lease expires.
                await asyncio.shield(self._record(claimed, _INTERRUPTED, started))
                raise
            return await self._record(claimed, result, started)

    async def _claim(self, job: DeliveryJob) -> Claimed | None:
        async with unit_of_work(self._sessions, self._dispatcher.dispatch) as uow:
            return await service.claim_for_delivery(uow, job.email_id, settings=self._settings)

    async def _send(self, claimed: Claimed) -> SendResult:
        email = claimed.email
        try:
            sender, recipients = envelope_addresses(email)
            message = build_message(email)
        except (ValueError, TypeError) as exc:
            # Cannot happen for input that passed validation; if it does, retrying won't help.
            return SendResult(Outcome.PERMANENT, None, f"Could not build the message: {exc}")
        return await self._transport.send(Envelope(sender, recipients, message))

    async def _record(self, claimed: Claimed, result: SendResult, started: datetime) -> str:
        finished = _now()
        if result.elapsed is not None:
            # The attempt is the conversation with the server, not the wait for a connection.
            started = max(started, finished - timedelta(seconds=result.elapsed))

        async def record() -> tuple[Decision, bool]:
            async with unit_of_work(self._sessions, self._dispatcher.dispatch) as uow:
                return await service.record_attempt(
                    uow,
                    claimed,
                    result,
                    started_at=started,
                    finished_at=finished,
                    settings=self._settings,
                    rng=self._rng,
                )

        # The SMTP server has answered; losing that answer to a PostgreSQL blip would
        # mean sending again. Keep trying while our claim on the email still holds.
        decision, applied = await _retry_database(record, budget=self._settings.sending_lease / 2)
        status: str = decision.transition.target.value
        fields = {
            "to": [mask_address(r) for r in claimed.email.recipients[:5]],
            "outcome": result.outcome.value,
            "code": result.code,
            "enhanced_code": result.enhanced_code,
            "duration_ms": round((finished - started).total_seconds() * 1000),
        }
        if not applied:
            log.warning("email.claim_lost", **fields)
            return "claim_lost"
        if result.config_error:
            log.error("smtp.configuration_error", reply=result.message, **fields)
        if status == "sent":
            log.info("email.sent", refused=len(result.refused), **fields)
        elif status == "retrying":
            log.warning(
                "email.deferred",
                reply=result.message,
                retry_in_s=round(decision.delay or 0, 1),
                **fields,
            )
        else:
            log.warning("email.failed", reply=result.message, **fields)
        return status


async def _retry_database(operation: Callable[[], Awaitable[T]], *, budget: float) -> T:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + budget
    delay = 0.2
    while True:
        retryable: Exception
        try:
            return await operation()
        except (OperationalError, InterfaceError, OSError) as exc:
            retryable = exc
        except DBAPIError as exc:
            if not exc.connection_invalidated:
                raise
            retryable = exc
        remaining = deadline - loop.time()
        if remaining <= 0:
            log.error(
                "db.retry_gave_up",
                error=type(retryable).__name__,
                budget_s=budget,
                hint="the email stays `sending` until its lease expires, then is retried",
            )
            raise retryable
        wait = min(delay, remaining)  # use the whole budget, not just the waits that fit
        log.warning("db.retrying", error=type(retryable).__name__, retry_in_s=round(wait, 2))
        await asyncio.sleep(wait)
        delay = min(delay * 2, 5.0)
