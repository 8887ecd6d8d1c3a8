"""One delivery job: claim the email, send it once, record the attempt, move the email on."""

from __future__ import annotations

import asyncio
import random
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import TypeVar

import structlog
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from mailroom.coalescer import Coalescer
from mailroom.emails import delivery
from mailroom.emails.delivery import EARLY_CLAIM_SLACK, AttemptResult, Claimed, Recorded
from mailroom.emails.message import build_message, envelope_addresses, return_path
from mailroom.emails.models import Email
from mailroom.emails.recipients import to_send
from mailroom.feedback.providers import POSTMARK_EMAIL_ID_KEY
from mailroom.log_config import mask_address
from mailroom.metrics.delivery import record_delivery
from mailroom.periodic import every
from mailroom.queue.dispatcher import Dispatcher
from mailroom.queue.jobs import DeliveryBatch, DeliveryJob
from mailroom.settings import Settings
from mailroom.transport.base import Envelope, MailTransport, Outcome, SendResult
from mailroom.transport.sandbox import SandboxTransport
from mailroom.unit_of_work import unit_of_work
from mailroom.worker.registry import ClaimsPaused, WorkerRegistry

log = structlog.get_logger(__name__)
T = TypeVar("T")

# Jobs whose claims (or records) one transaction carries at most.
_COALESCE_MAX_JOBS = 100

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
        sandbox_transport: MailTransport | None = None,
        registry: WorkerRegistry | None = None,
    ) -> None:
        self._sessions = sessions
        # The process's heartbeat: claims carry its id, and stop while it is stale.
        self._registry = registry
        self._dispatcher = dispatcher
        self._transport = transport
        # Sandbox emails go here instead (the dev inbox under `mailroom dev`).
        self._sandbox = sandbox_transport or SandboxTransport()
        self._settings = settings
        self._rng = rng or random.Random()
        # Concurrent jobs share their claim and record transactions (see coalescer).
        self._claims: Coalescer[tuple[uuid.UUID, ...], list[Claimed]] = Coalescer(
            self._claim_together, max_items=_COALESCE_MAX_JOBS
        )
        # Serial: answers arriving while a record runs share the next one, so recording
        # each answer as it comes costs few transactions.
        self._records: Coalescer[tuple[AttemptResult, ...], list[Recorded]] = Coalescer(
            self._record_together, max_items=_COALESCE_MAX_JOBS, serial=True
        )

    async def _keep_leases(self, claimed: list[Claimed]) -> None:
        """Renew these emails' leases every third of SENDING_LEASE until cancelled.

        A batch's emails are all claimed at once and then wait their turn for a pooled
        connection; behind a slow provider that wait could outlast the lease, and another
        worker would take an email over and send it a second time. Renewed, a lease
        expires only when its worker is gone. (A renewal after an email was recorded
        changes nothing: it is no longer `sending`.)
        """
        lease = timedelta(seconds=self._settings.sending_lease)
        held = [(c.email.id, c.attempt) for c in claimed]

        async def renew() -> None:
            async with self._sessions() as session:
                await delivery.renew_leases(session, held, lease)
                await session.commit()

        await every(
            self._settings.sending_lease / 3,
            renew,
            event="lease.renew_failed",
            log_fields={"emails": len(held)},
        )

    async def deliver(self, job: DeliveryJob) -> str:
        """Run one job; returns what became of it (a short label for BullMQ's result)."""
        with structlog.contextvars.bound_contextvars(
            email_id=str(job.email_id), request_id=job.request_id, attempt=job.attempt
        ):
            statuses = await self._deliver((job.email_id,))
        return statuses[0] if statuses else "skipped"

    async def deliver_batch(self, batch: DeliveryBatch) -> str:
        """Run a batch job: every email claimed, sent and recorded together."""
        with structlog.contextvars.bound_contextvars(request_id=batch.request_id):
            statuses = await self._deliver(batch.email_ids)
        counts = Counter(statuses)
        counts["skipped"] = len(batch.email_ids) - len(statuses)
        return " ".join(f"{status}={n}" for status, n in sorted(counts.items()) if n)

    async def _deliver(self, email_ids: Sequence[uuid.UUID]) -> list[str]:
        claiming = asyncio.ensure_future(self._claim(email_ids))
        try:
            claimed = await asyncio.shield(claiming)
        except asyncio.CancelledError:
            # Stopped while claiming: finish the claim (a short transaction) and
            # hand the emails straight back, rather than leave them leased.
            claimed = await claiming
            now = _now()
            await self._record([_interrupted(c, now) for c in claimed])
            raise
        if not claimed:
            # Finished, owned by another worker, or not due yet: a duplicate job.
            log.debug("email.claim_skipped", emails=len(email_ids))
            return []
        keeper = asyncio.ensure_future(self._keep_leases(claimed))
        try:
            return await self._deliver_claimed(claimed)
        finally:
            keeper.cancel()

    async def _deliver_claimed(self, claimed: list[Claimed]) -> list[str]:
        for c in claimed:
            if c.reclaimed:
                log.warning("email.reclaimed", email_id=str(c.email.id), attempt=c.attempt)
        started = _now()
        sends = [asyncio.ensure_future(self._send_and_record(c, started)) for c in claimed]
        # Every send runs to its end (a stop cancels them all, and each hands its email
        # back); only then does a failure to record propagate.
        outcomes = await asyncio.gather(*sends, return_exceptions=True)
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome
        return [o for o in outcomes if not isinstance(o, BaseException)]

    async def _send_and_record(self, claimed: Claimed, started: datetime) -> str:
        """Send one claimed email and record the answer as soon as it comes.

        A batch's answers are not held for its slowest email: an answer recorded late is
        an email sent twice if the worker dies meanwhile (its lease expires and another
        worker sends it again).
        """
        try:
            attempt = await self._attempt(claimed)
        except asyncio.CancelledError:
            # Stopped before the server answered: hand the email back for a retry (as
            # interrupted) rather than leave it until its lease expires.
            await asyncio.shield(self._record([_interrupted(claimed, started)]))
            raise
        # The server has answered: a stop now must not roll the record back (the email
        # would stay `sending` with no attempt, and be sent again once its lease expired).
        recording = asyncio.ensure_future(self._record([attempt]))
        try:
            [status] = await asyncio.shield(recording)
        except asyncio.CancelledError:
            await recording
            raise
        return status

    async def _claim(self, email_ids: Sequence[uuid.UUID]) -> list[Claimed]:
        return await self._claims.submit(tuple(email_ids))

    async def _claim_together(self, jobs: list[tuple[uuid.UUID, ...]]) -> list[list[Claimed]]:
        wanted = list(dict.fromkeys(i for ids in jobs for i in ids))
        registry = self._registry
        if registry is not None and not registry.fresh():
            # Another worker may take this one's emails over any moment: claim nothing.
            # The job fails and BullMQ runs it again after a backoff.
            log.warning("worker.claims_paused", emails=len(wanted), reason="heartbeat stale")
            raise ClaimsPaused("this worker's heartbeat is stale; not claiming")
        async with unit_of_work(self._sessions, self._dispatcher.dispatch) as uow:
            claimed = await delivery.claim_for_delivery(
                uow,
                wanted,
                settings=self._settings,
                worker_id=registry.worker_id if registry is not None else None,
            )
        by_id = {c.email.id: c for c in claimed}
        # An email claimed once goes to the first job that asked for it; a duplicate
        # job in the same run gets nothing, as it would have on its own.
        return [[c for i in ids if (c := by_id.pop(i, None)) is not None] for ids in jobs]

    async def _attempt(self, claimed: Claimed) -> AttemptResult:
        await _not_before(claimed.email.send_at)
        started = _now()
        try:
            result = await self._send(claimed)
        except Exception as exc:
            # the attempt may have reached the server: retry, with the same Message-ID.
            log.exception("transport.raised", email_id=str(claimed.email.id))
            result = SendResult(
                Outcome.UNKNOWN, None, f"Internal error during the attempt: {type(exc).__name__}"
            )
        finished = _now()
        if result.elapsed is not None:
            # The attempt is the conversation with the server, not the wait for a connection.
            started = max(started, finished - timedelta(seconds=result.elapsed))
        return AttemptResult(claimed, result, started_at=started, finished_at=finished)

    async def _send(self, claimed: Claimed) -> SendResult:
        email = claimed.email
        try:
            sender, envelope = envelope_addresses(email)
            sender = return_path(email, self._settings.bounce_domain) or sender
            # After a partial deferral, only the recipients still deferred.
            recipients = to_send(email.recipient_states, envelope)
            message = build_message(email, claimed.attachments, self._own_headers(email))
        except (ValueError, TypeError) as exc:
            # Cannot happen for input that passed validation; if it does, retrying won't help.
            return SendResult(Outcome.PERMANENT, None, f"Could not build the message: {exc}")
        transport = self._sandbox if email.sandbox else self._transport
        return await transport.send(Envelope(sender, recipients, message))

    def _own_headers(self, email: Email) -> tuple[tuple[str, str], ...]:
        # Postmark turns X-PM-Metadata-* headers into metadata, which its webhooks carry
        # back (they carry no headers): how POST /feedback/postmark finds the email.
        if self._settings.feedback_postmark_token is None:
            return ()
        return ((f"X-PM-Metadata-{POSTMARK_EMAIL_ID_KEY}", str(email.id)),)

    async def _record(self, attempts: list[AttemptResult]) -> list[str]:
        if not attempts:
            return []

        async def record() -> list[Recorded]:
            return await self._records.submit(tuple(attempts))

        # The SMTP server has answered; losing that answer to a PostgreSQL blip would
        # mean sending again. Keep trying while our claims on the emails still hold.
        recorded = await _retry_database(record, budget=self._settings.sending_lease / 2)
        return [_log_outcome(a, r) for a, r in zip(attempts, recorded, strict=True)]

    async def _record_together(self, jobs: list[tuple[AttemptResult, ...]]) -> list[list[Recorded]]:
        attempts = [a for job in jobs for a in job]
        async with unit_of_work(self._sessions, self._dispatcher.dispatch) as uow:
            recorded = await delivery.record_attempts(
                uow, attempts, settings=self._settings, rng=self._rng
            )
        parts: list[list[Recorded]] = []
        start = 0
        for job in jobs:
            parts.append(recorded[start : start + len(job)])
            start += len(job)
        return parts


async def _not_before(send_at: datetime | None) -> None:
    """Hold a scheduled email claimed a little early until its sendAt.

    The claim takes emails due within EARLY_CLAIM_SLACK, so that a job firing a moment
    early is not wasted; a sendAt is a promise, so the send itself waits the rest. The
    wait is capped by the slack: a clock behind the database's cannot hold it longer.
    """
    if send_at is None:
        return
    remaining = (send_at - _now()).total_seconds()
    if remaining > 0:
        await asyncio.sleep(min(remaining, EARLY_CLAIM_SLACK.total_seconds()))


def _interrupted(claimed: Claimed, started: datetime) -> AttemptResult:
    return AttemptResult(claimed, _INTERRUPTED, started_at=started, finished_at=_now())


def _log_outcome(attempt: AttemptResult, recorded: Recorded) -> str:
    result, email = attempt.result, attempt.claimed.email
    fields = {
        "email_id": str(email.id),
        # Its own request's id: a batch job may carry emails of many requests.
        "request_id": email.request_id,
        "attempt": attempt.claimed.attempt,
        "to": [mask_address(r) for r in email.recipients[:5]],
        "outcome": result.outcome.value,
        "code": result.code,
        "enhanced_code": result.enhanced_code,
        "provider": result.provider,
        "duration_ms": round((attempt.finished_at - attempt.started_at).total_seconds() * 1000),
    }
    if result.outcome is Outcome.PACED:
        # No attempt: a provider's limit; the email waits, unchanged, for its turn.
        log.info("email.paced", reason=result.message, wait_s=recorded.decision.delay, **fields)
        return "paced" if recorded.applied else "claim_lost"
    record_delivery(attempt, recorded)  # metrics
    if not recorded.applied:
        log.warning(
            "email.claim_lost",
            possible_duplicate=True,
            reason=(
                "another worker took this email over (this worker's heartbeat or lease "
                "lapsed) and made its own attempt: the message may have been sent twice; "
                "this answer is not recorded"
            ),
            **fields,
        )
        return "claim_lost"
    if result.config_error:
        log.error("smtp.configuration_error", reply=result.message, **fields)
    status: str = recorded.decision.transition.target.value
    if status == "sent":
        log.info("email.sent", refused=len(result.refused), **fields)
    elif status == "retrying":
        log.warning(
            "email.deferred",
            reply=result.message,
            retry_in_s=round(recorded.decision.delay or 0, 1),
            **fields,
        )
    else:
        log.warning("email.failed", reply=result.message, **fields)
    return status


_TRY_AGAIN = frozenset({"40P01", "40001"})  # deadlock_detected, serialization_failure


def _sqlstate(exc: DBAPIError) -> str | None:
    code = getattr(exc.orig, "sqlstate", None)
    return code if isinstance(code, str) else None


def _worth_retrying(exc: BaseException) -> bool:
    if isinstance(exc, (OperationalError, InterfaceError, OSError)):
        return True
    # A deadlock or serialization failure rolled the whole transaction back: running it
    # again is the documented remedy.
    return isinstance(exc, DBAPIError) and (
        exc.connection_invalidated or _sqlstate(exc) in _TRY_AGAIN
    )


async def _retry_database(operation: Callable[[], Awaitable[T]], *, budget: float) -> T:
    """Run ``operation``, again after each database fault, for up to ``budget`` seconds.

    Waits 0.2 s, then twice as long each time (at most 5 s), the last wait cut to what
    is left: the whole budget is used, not just the waits that fit in it.

    Hand-written for a measured reason: with tenacity's AsyncRetrying around every record
    the worker's peak RSS in `make bench` (e2e batch, 1 worker) went from 150 to 210 MB.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + budget
    delay = 0.2
    while True:
        try:
            return await operation()
        except Exception as exc:
            if not _worth_retrying(exc):
                raise
            remaining = deadline - loop.time()
            if remaining <= 0:
                log.error(
                    "db.retry_gave_up",
                    error=type(exc).__name__,
                    budget_s=budget,
                    hint="the email stays `sending` until its lease expires, then is retried",
                )
                raise
            wait = min(delay, remaining)
            log.warning("db.retrying", error=type(exc).__name__, retry_in_s=round(wait, 2))
        await asyncio.sleep(wait)
        delay = min(delay * 2, 5.0)
