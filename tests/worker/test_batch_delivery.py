"""Batch jobs (POST /send/batch): claimed, sent and recorded together, and never twice.

The Deliverer is driven directly where a test needs to control timing (duplicates,
cancellation); the rest runs a real worker against the in-process SMTP server.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import httpx
import pytest
from aiosmtpd.smtp import SMTP, Session
from aiosmtpd.smtp import Envelope as SmtpEnvelope
from sqlalchemy import select, text, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from mailroom.emails import accepting, delivery
from mailroom.emails.models import Email
from mailroom.projects.models import DEFAULT_PROJECT_ID
from mailroom.queue.dispatcher import Dispatcher
from mailroom.queue.jobs import BATCH_JOB_NAME, JOB_NAME, DeliveryBatch, DeliveryJob, Job
from mailroom.settings import Settings
from mailroom.transport.base import Envelope, SendResult
from mailroom.transport.memory import MemoryTransport, reply
from mailroom.transport.smtp import SmtpTransport
from mailroom.unit_of_work import unit_of_work
from mailroom.worker.delivery import Deliverer
from mailroom.worker.runner import DeliveryWorker
from mailroom.worker.sweeper import Sweeper
from tests.conftest import api_client, running_worker, smtp_transport_for
from tests.support import factories
from tests.support.api_calls import email_detail
from tests.support.factories import batch_items, stored_emails
from tests.support.smtp_server import ScriptedHandler, SmtpTestServer
from tests.support.waiting import eventually
from tests.worker.conftest import make_deliverer

pytestmark = pytest.mark.usefixtures("clean")

JOB_STATES = ("waiting", "delayed", "active", "paused", "prioritized")


# -- fixtures and helpers ------------------------------------------------------------------


@pytest.fixture
def memory(transport: MemoryTransport) -> MemoryTransport:
    """The shared `transport` fixture (the deliverer's), by the name these tests use."""
    return transport


@pytest.fixture
async def key_id(sessions: async_sessionmaker[AsyncSession], api_key: str) -> uuid.UUID:
    return await factories.key_id(sessions, api_key)


async def _accept_batch(
    sessions: async_sessionmaker[AsyncSession],
    settings: Settings,
    key_id: uuid.UUID,
    items: Sequence[object],
) -> tuple[list[uuid.UUID], list[DeliveryBatch]]:
    """Accept a batch as POST /send/batch does; its jobs are returned, not queued."""
    jobs: list[Job] = []

    async def keep(dispatched: Sequence[Job]) -> bool:
        jobs.extend(dispatched)
        return True

    async with unit_of_work(sessions, keep) as uow:
        acceptance = await accepting.send_batch(
            uow,
            items,
            settings=settings,
            request_id="req-batch",
            api_key_id=key_id,
            project_id=DEFAULT_PROJECT_ID,
            idempotency_key=None,
        )
    ids = [r.id for r in acceptance.response.data if r.id is not None]
    batches = [job for job in jobs if isinstance(job, DeliveryBatch)]
    assert len(batches) == len(jobs)
    return ids, batches


async def _make_due(sessions: async_sessionmaker[AsyncSession], *ids: uuid.UUID) -> None:
    async with sessions() as session:
        await session.execute(
            update(Email).where(Email.id.in_(ids)).values(next_attempt_at=Email.created_at)
        )
        await session.commit()


def _outcomes(email: Email) -> list[tuple[int, str, int | None]]:
    return [(a.attempt_number, a.outcome, a.smtp_code) for a in email.delivery_attempts]


async def _queued_jobs(dispatcher: Dispatcher) -> list[Any]:
    jobs: list[Any] = await dispatcher.queue.getJobs(list(JOB_STATES))
    return jobs


async def _queue_empty(dispatcher: Dispatcher) -> bool:
    counts: dict[str, int] = await dispatcher.queue.getJobCounts(*JOB_STATES)
    return sum(counts.values()) == 0


def _message_ids(envelopes: Sequence[Envelope]) -> list[str]:
    """The Message-ID header of each envelope's message."""
    found = []
    for envelope in envelopes:
        for line in envelope.message.split(b"\r\n"):
            if line.lower().startswith(b"message-id:"):
                found.append(line.split(b":", 1)[1].strip().decode())
                break
    return found


@dataclass
class _OnceHandler(ScriptedHandler):
    """Also answers RCPT from ``rcpt_once``: each entry once, then the recipient is accepted."""

    rcpt_once: dict[str, str] = field(default_factory=dict)

    async def handle_RCPT(
        self,
        server: SMTP,
        session: Session,
        envelope: SmtpEnvelope,
        address: str,
        options: Any,
    ) -> str:
        once = self.rcpt_once.pop(address.lower(), None)
        if once is not None:
            return once
        return await super().handle_RCPT(server, session, envelope, address, options)


@pytest.fixture
async def scripted_server() -> AsyncIterator[tuple[SmtpTestServer, _OnceHandler]]:
    server = SmtpTestServer()
    handler = _OnceHandler()
    server.handler = handler
    await server.start()
    yield server, handler
    await server.stop()


@pytest.fixture
async def smtp_transport(
    scripted_server: tuple[SmtpTestServer, _OnceHandler],
) -> AsyncIterator[SmtpTransport]:
    transport = smtp_transport_for(scripted_server[0])
    yield transport
    await transport.aclose()


class HoldingTransport:
    """Accepts everything, but holds each send to a ``hold`` recipient until ``release``."""

    def __init__(self, hold: set[str]) -> None:
        self.hold = hold
        self.release = asyncio.Event()
        self.started: list[Envelope] = []
        self.finished: list[Envelope] = []
        self.holding = 0
        self.closed = False

    async def send(self, envelope: Envelope) -> SendResult:
        self.started.append(envelope)
        if self.hold.intersection(envelope.recipients):
            self.holding += 1
            try:
                await self.release.wait()
            finally:
                self.holding -= 1
        self.finished.append(envelope)
        return reply(250, "2.0.0 OK queued")

    async def aclose(self) -> None:
        self.closed = True


# -- end to end --------------------------------------------------------------------------------


async def test_a_batch_is_delivered_end_to_end_each_email_once(
    settings: Settings,
    settings_factory: Callable[..., Settings],
    api_key: str,
    smtp_server: SmtpTestServer,
    dispatcher: Dispatcher,
) -> None:
    emails: list[Any] = batch_items(9, prefix="e2e")
    emails[4] = {"to": "bad", "subject": "s", "text": "t"}
    emails[6]["cc"] = "copy@example.com"
    async with (
        api_client(settings_factory(batch_job_size=3), key=api_key) as client,
        running_worker(settings, smtp_server),
    ):
        response = await client.post(
            "/send/batch", json={"emails": emails}, headers={"X-Request-ID": "req-e2e-batch"}
        )
        assert response.status_code == 202, response.text
        accepted = [item for item in response.json()["data"] if "id" in item]
        assert len(accepted) == 8

        async def statuses() -> list[str]:
            return [(await email_detail(client, item["id"]))["status"] for item in accepted]

        await eventually(statuses, lambda found: set(found) == {"sent"}, what="all sent")
        details = [await email_detail(client, item["id"]) for item in accepted]
        log = (await client.get("/logs/email")).json()

    for item, detail in zip(accepted, details, strict=True):
        assert detail["attempts"] == 1
        assert detail["requestId"] == "req-e2e-batch"
        assert detail["error"] is None and detail["sentAt"] is not None
        [attempt] = detail["deliveryAttempts"]
        assert (attempt["number"], attempt["outcome"], attempt["code"]) == (1, "accepted", 250)
        assert detail["messageId"] == item["messageId"]

    received = smtp_server.handler.messages()
    assert len(received) == 8
    by_message_id = {m.parsed()["Message-ID"]: m for m in received}
    assert set(by_message_id) == {item["messageId"] for item in accepted}
    for item in accepted:
        message = by_message_id[item["messageId"]]
        n = item["index"]
        assert message.parsed()["Subject"] == f"e2e {n}"
        expected = {f"e2e{n}@example.com"} | ({"copy@example.com"} if n == 6 else set())
        assert set(message.envelope_to) == expected
    assert log["summary"]["sent"] == 8 and log["summary"]["total"] == 8
    assert await _queue_empty(dispatcher)


async def test_refusals_and_deferrals_in_one_batch_each_get_their_own_outcome(
    settings: Settings,
    sessions: async_sessionmaker[AsyncSession],
    dispatcher: Dispatcher,
    key_id: uuid.UUID,
    scripted_server: tuple[SmtpTestServer, _OnceHandler],
    smtp_transport: SmtpTransport,
) -> None:
    server, handler = scripted_server
    handler.rcpt_replies["gone@example.com"] = "550 5.1.1 No such user"
    handler.rcpt_once["later@example.com"] = "451 4.7.1 Greylisted, come back later"
    ids, [batch] = await _accept_batch(
        sessions,
        settings,
        key_id,
        [
            {"to": "ok@example.com", "subject": "ok", "text": "t"},
            {"to": "gone@example.com", "subject": "gone", "text": "t"},
            {"to": "later@example.com", "subject": "later", "text": "t"},
            {"to": ["part@example.com", "gone@example.com"], "subject": "part", "text": "t"},
        ],
    )
    ok, gone, later, part = ids
    assert batch.email_ids == (ok, gone, later, part)

    deliverer = make_deliverer(sessions, dispatcher, settings, smtp_transport)
    result = await deliverer.deliver_batch(batch)
    assert result == "failed=1 retrying=1 sent=2"

    emails = await stored_emails(sessions, ids)
    assert {i: emails[i].status for i in ids} == {
        ok: "sent",
        gone: "failed",
        later: "retrying",
        part: "sent",
    }
    assert _outcomes(emails[ok]) == [(1, "accepted", 250)]
    assert _outcomes(emails[gone]) == [(1, "permanent", 550)]
    assert _outcomes(emails[later]) == [(1, "transient", 451)]
    assert _outcomes(emails[part]) == [(1, "accepted", 250)]
    assert emails[ok].last_error_code is None
    assert (emails[gone].last_error_code, emails[gone].last_error_enhanced) == (550, "5.1.1")
    assert emails[gone].failed_at is not None and emails[gone].sent_at is None
    assert (emails[later].last_error_code, emails[later].last_error_enhanced) == (451, "4.7.1")
    assert emails[later].next_attempt_at is not None
    assert emails[part].last_error_code == 550
    assert emails[part].delivery_attempts[0].refused_recipients == [
        {
            "recipient": "gone@example.com",
            "code": 550,
            "enhancedCode": "5.1.1",
            "message": "No such user",
        }
    ]
    assert all(e.lease_expires_at is None and e.attempts == 1 for e in emails.values())
    received = {m.parsed()["Subject"]: m for m in handler.messages()}
    assert sorted(received) == ["ok", "part"]
    assert received["part"].envelope_to == ("part@example.com",)

    # The retry is a single job of its own, with its own delay; nothing else is queued.
    [retry] = await _queued_jobs(dispatcher)
    assert retry.id == f"{later}-2"
    assert retry.name == JOB_NAME
    assert retry.data == {"emailId": str(later), "attempt": 2, "requestId": "req-batch"}
    assert retry.opts["delay"] > 0

    # A real worker runs it: the greylisting is over, so the second attempt goes through.
    async with running_worker(settings, server):

        async def later_email() -> Email:
            return (await stored_emails(sessions, [later]))[later]

        done = await eventually(later_email, lambda e: e.status == "sent", what="the retry")
    assert _outcomes(done) == [(1, "transient", 451), (2, "accepted", 250)]
    assert done.last_error_code is None
    assert sorted(m.parsed()["Subject"] for m in handler.messages()) == ["later", "ok", "part"]
    # Nothing else happened to the others.
    after = await stored_emails(sessions, [ok, gone, part])
    assert all(len(e.delivery_attempts) == 1 for e in after.values())


async def test_a_batch_is_sent_concurrently_and_recorded_in_one_transaction(
    settings: Settings,
    sessions: async_sessionmaker[AsyncSession],
    dispatcher: Dispatcher,
    key_id: uuid.UUID,
) -> None:
    ids, [batch] = await _accept_batch(sessions, settings, key_id, batch_items(6))
    transport = HoldingTransport({f"batch{n}@example.com" for n in range(6)})
    delivering = asyncio.ensure_future(
        make_deliverer(sessions, dispatcher, settings, transport).deliver_batch(batch)
    )
    try:
        # Every send is under way at once, before any of them has been answered.
        await eventually(lambda: _value(transport.holding), lambda n: n == 6, what="6 in flight")
        emails = await stored_emails(sessions, ids)
        assert {e.status for e in emails.values()} == {"sending"}
        # Claimed together: one statement, one timestamp.
        assert len({e.updated_at for e in emails.values()}) == 1
        transport.release.set()
        assert await delivering == "sent=6"
    finally:
        delivering.cancel()

    emails = await stored_emails(sessions, ids)
    assert {e.status for e in emails.values()} == {"sent"}
    # Recorded together: one transaction's now() on every row.
    assert len({e.updated_at for e in emails.values()}) == 1
    assert sorted(_message_ids(transport.finished)) == sorted(e.message_id for e in emails.values())


async def _value(value: int) -> int:
    return value


# -- duplicates and skips ------------------------------------------------------------------------


async def test_a_duplicate_batch_job_after_delivery_is_a_no_op(
    settings: Settings,
    sessions: async_sessionmaker[AsyncSession],
    key_id: uuid.UUID,
    deliverer: Deliverer,
    memory: MemoryTransport,
) -> None:
    ids, [batch] = await _accept_batch(sessions, settings, key_id, batch_items(4))
    assert await deliverer.deliver_batch(batch) == "sent=4"
    assert await deliverer.deliver_batch(batch) == "skipped=4"
    # The same job rebuilt from its queued data, as a redelivered job would be.
    assert await deliverer.deliver_batch(DeliveryBatch.from_data(batch.data())) == "skipped=4"

    assert len(memory.attempts) == 4
    emails = await stored_emails(sessions, ids)
    assert all(_outcomes(e) == [(1, "accepted", 250)] for e in emails.values())
    assert all(e.attempts == 1 for e in emails.values())


async def test_a_duplicate_batch_job_through_the_worker_sends_nothing_again(
    client: httpx.AsyncClient,
    settings: Settings,
    sessions: async_sessionmaker[AsyncSession],
    smtp_server: SmtpTestServer,
    dispatcher: Dispatcher,
) -> None:
    async with running_worker(settings, smtp_server):
        response = await client.post("/send/batch", json={"emails": batch_items(3)})
        assert response.status_code == 202, response.text
        ids = [uuid.UUID(item["id"]) for item in response.json()["data"]]

        async def sent() -> int:
            emails = await stored_emails(sessions, ids)
            return sum(e.status == "sent" for e in emails.values())

        await eventually(sent, lambda n: n == 3, what="the batch sent")
        await eventually(lambda: _queue_empty(dispatcher), bool, what="the first job removed")
        # The same batch job again (Redis redelivering it, say), and the single jobs too.
        batch = DeliveryBatch(tuple(ids), request_id="again")
        assert await dispatcher.dispatch([batch, *(DeliveryJob(i, attempt=1) for i in ids)])
        await eventually(lambda: _queue_empty(dispatcher), bool, what="the duplicates done")

    assert len(smtp_server.handler.messages()) == 3
    emails = await stored_emails(sessions, ids)
    assert all(_outcomes(e) == [(1, "accepted", 250)] for e in emails.values())


async def test_a_batch_job_skips_emails_already_sent_or_owned_elsewhere(
    settings: Settings,
    sessions: async_sessionmaker[AsyncSession],
    dispatcher: Dispatcher,
    key_id: uuid.UUID,
    deliverer: Deliverer,
    memory: MemoryTransport,
) -> None:
    ids, [batch] = await _accept_batch(sessions, settings, key_id, batch_items(5))
    already_sent, owned_elsewhere = ids[1], ids[3]
    assert await deliverer.deliver(DeliveryJob(already_sent, attempt=1)) == "sent"
    # Another worker holds a live claim on this one.
    async with unit_of_work(sessions, dispatcher.dispatch) as uow:
        [claimed] = await delivery.claim_for_delivery(uow, [owned_elsewhere], settings=settings)
    assert claimed.attempt == 1

    assert await deliverer.deliver_batch(batch) == "sent=3 skipped=2"

    assert len(memory.attempts) == 4  # the single send and the batch's three
    assert (
        _message_ids(memory.attempts).count(
            (await stored_emails(sessions, [already_sent]))[already_sent].message_id
        )
        == 1
    )
    emails = await stored_emails(sessions, ids)
    for email_id in ids:
        email = emails[email_id]
        if email_id == owned_elsewhere:
            assert (email.status, email.attempts, email.delivery_attempts) == ("sending", 1, [])
        else:
            assert email.status == "sent"
            assert _outcomes(email) == [(1, "accepted", 250)]


async def test_a_batch_job_does_not_send_a_retry_before_it_is_due(
    settings: Settings,
    sessions: async_sessionmaker[AsyncSession],
    key_id: uuid.UUID,
    deliverer: Deliverer,
    memory: MemoryTransport,
) -> None:
    ids, [batch] = await _accept_batch(sessions, settings, key_id, batch_items(3))
    memory.script(reply(250, "OK"), reply(451, "4.3.0 Try again later"), reply(250, "OK"))
    assert await deliverer.deliver_batch(batch) == "retrying=1 sent=2"
    [deferred] = [e for e in (await stored_emails(sessions, ids)).values() if e.status != "sent"]
    async with sessions() as session:
        await session.execute(
            update(Email)
            .where(Email.id == deferred.id)
            .values(next_attempt_at=Email.next_attempt_at + timedelta(minutes=10))
        )
        await session.commit()

    # A stale duplicate of the batch job: the deferred email is not due, the rest are done.
    assert await deliverer.deliver_batch(batch) == "skipped=3"
    assert len(memory.attempts) == 3
    await _make_due(sessions, deferred.id)
    assert await deliverer.deliver(DeliveryJob(deferred.id, attempt=2)) == "sent"


@pytest.mark.parametrize("shared", [True, False], ids=["one-deliverer", "one-per-job"])
async def test_overlapping_batch_jobs_running_at_once_send_each_email_once(
    settings: Settings,
    sessions: async_sessionmaker[AsyncSession],
    dispatcher: Dispatcher,
    key_id: uuid.UUID,
    memory: MemoryTransport,
    shared: bool,
) -> None:
    ids, _ = await _accept_batch(sessions, settings, key_id, batch_items(40))
    jobs = [
        DeliveryBatch(tuple(ids[:30])),
        DeliveryBatch(tuple(reversed(ids[10:]))),
        DeliveryBatch(tuple(ids[5:35])),
        DeliveryBatch(tuple(ids)),
    ]
    # One Deliverer is one worker process running jobs concurrently; several are several.
    one = make_deliverer(sessions, dispatcher, settings, memory)
    workers = [
        one if shared else make_deliverer(sessions, dispatcher, settings, memory) for _ in jobs
    ]
    labels = await asyncio.gather(
        *(w.deliver_batch(j) for w, j in zip(workers, jobs, strict=True)),
        *(w.deliver(DeliveryJob(i, attempt=1)) for w, i in zip(workers, ids[::10], strict=True)),
    )

    sent = sum(
        int(part.split("=")[1])
        for label in labels[:4]
        for part in label.split()
        if part.startswith("sent=")
    )
    sent += labels[4:].count("sent")
    assert sent == 40, labels
    sent_ids = _message_ids(memory.attempts)
    assert len(sent_ids) == 40
    assert len(set(sent_ids)) == 40
    emails = await stored_emails(sessions, ids)
    assert all(_outcomes(e) == [(1, "accepted", 250)] for e in emails.values())


# -- shutdown mid-batch ------------------------------------------------------------------------


async def test_an_answer_is_recorded_while_the_rest_of_its_batch_is_still_sending(
    settings: Settings,
    sessions: async_sessionmaker[AsyncSession],
    dispatcher: Dispatcher,
    key_id: uuid.UUID,
) -> None:
    # A worker killed now must not send the answered emails again: they are already
    # recorded, not waiting for the batch's slowest email.
    ids, [batch] = await _accept_batch(sessions, settings, key_id, batch_items(5))
    held = {ids[1], ids[3]}
    transport = HoldingTransport({"batch1@example.com", "batch3@example.com"})
    delivering = asyncio.ensure_future(
        make_deliverer(sessions, dispatcher, settings, transport).deliver_batch(batch)
    )
    try:

        async def statuses() -> dict[uuid.UUID, str]:
            return {i: e.status for i, e in (await stored_emails(sessions, ids)).items()}

        found = await eventually(
            statuses,
            lambda s: all(s[i] == "sent" for i in ids if i not in held),
            what="the three answered emails recorded as sent",
        )
        assert transport.holding == 2
        assert all(found[i] == "sending" for i in held)
    finally:
        transport.release.set()
    assert await delivering == "sent=5"


async def test_a_batch_cancelled_mid_send_keeps_finished_results_and_hands_back_the_rest(
    settings: Settings,
    sessions: async_sessionmaker[AsyncSession],
    dispatcher: Dispatcher,
    key_id: uuid.UUID,
    memory: MemoryTransport,
) -> None:
    ids, [batch] = await _accept_batch(sessions, settings, key_id, batch_items(5))
    held = {ids[1], ids[3]}
    transport = HoldingTransport({"batch1@example.com", "batch3@example.com"})
    delivering = asyncio.ensure_future(
        make_deliverer(sessions, dispatcher, settings, transport).deliver_batch(batch)
    )

    async def progress() -> tuple[int, int]:
        return len(transport.finished), transport.holding

    await eventually(progress, lambda p: p == (3, 2), what="3 answered and 2 held")
    delivering.cancel()
    with pytest.raises(asyncio.CancelledError):
        await delivering

    emails = await stored_emails(sessions, ids)
    for email_id in ids:
        email = emails[email_id]
        assert email.attempts == 1
        assert email.lease_expires_at is None
        if email_id in held:
            assert email.status == "retrying"
            assert _outcomes(email) == [(1, "interrupted", None)]
            assert email.next_attempt_at is not None
        else:
            assert email.status == "sent"
            assert _outcomes(email) == [(1, "accepted", 250)]
    # The interrupted ones go back as single retry jobs; the sent ones are done.
    jobs = await _queued_jobs(dispatcher)
    assert sorted(job.id for job in jobs) == sorted(f"{i}-2" for i in held)
    assert {job.name for job in jobs} == {JOB_NAME}

    # Their retries go out with the same Message-ID and are then sent.
    await _make_due(sessions, *held)
    retrier = make_deliverer(sessions, dispatcher, settings, memory)
    for job in jobs:
        assert await retrier.deliver(DeliveryJob.from_data(job.data)) == "sent"
    emails = await stored_emails(sessions, ids)
    for email_id in held:
        assert _outcomes(emails[email_id]) == [(1, "interrupted", None), (2, "accepted", 250)]
    assert sorted(_message_ids(memory.delivered)) == sorted(emails[i].message_id for i in held)
    # Nothing was sent twice: three by the batch, two by the retries.
    assert len(transport.finished) == 3


async def test_a_worker_stopped_mid_batch_records_the_interrupted_and_the_sent(
    client: httpx.AsyncClient,
    settings: Settings,
    sessions: async_sessionmaker[AsyncSession],
    dispatcher: Dispatcher,
) -> None:
    transport = HoldingTransport({"batch0@example.com", "batch4@example.com"})
    worker = DeliveryWorker(settings, transport=transport, grace_period=0.5, sweep=False)
    await worker.start()
    try:
        response = await client.post("/send/batch", json={"emails": batch_items(6)})
        assert response.status_code == 202, response.text
        ids = [uuid.UUID(item["id"]) for item in response.json()["data"]]

        async def progress() -> tuple[int, int]:
            return len(transport.finished), transport.holding

        await eventually(progress, lambda p: p == (4, 2), what="4 answered and 2 held")
    finally:
        await worker.stop()

    emails = await stored_emails(sessions, ids)
    statuses = [emails[i].status for i in ids]
    assert statuses == ["retrying", "sent", "sent", "sent", "retrying", "sent"]
    assert [_outcomes(emails[i]) for i in (ids[0], ids[4])] == [[(1, "interrupted", None)]] * 2
    assert all(_outcomes(emails[i]) == [(1, "accepted", 250)] for i in ids[1:4] + ids[5:])
    assert transport.closed
    jobs = await _queued_jobs(dispatcher)
    assert sorted(job.id for job in jobs) == sorted([f"{ids[0]}-2", f"{ids[4]}-2"])
    assert all(job.name == JOB_NAME for job in jobs)
    assert not any(job.name == BATCH_JOB_NAME for job in jobs)


async def _waiting_on_a_lock(sessions: async_sessionmaker[AsyncSession]) -> int:
    async with sessions() as session:
        found = await session.execute(
            text(
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE datname = current_database() AND wait_event_type = 'Lock'"
            )
        )
    return int(found.scalar_one())


async def test_a_batch_cancelled_while_recording_keeps_the_real_results(
    settings: Settings,
    sessions: async_sessionmaker[AsyncSession],
    dispatcher: Dispatcher,
    key_id: uuid.UUID,
) -> None:
    ids, [batch] = await _accept_batch(sessions, settings, key_id, batch_items(3))
    transport = HoldingTransport({"batch0@example.com", "batch1@example.com", "batch2@example.com"})
    delivering = asyncio.ensure_future(
        make_deliverer(sessions, dispatcher, settings, transport).deliver_batch(batch)
    )
    await eventually(lambda: _value(transport.holding), lambda n: n == 3, what="3 in flight")
    # Every send is answered, but the rows are locked: recording the answers has to wait.
    async with sessions() as blocker:
        await blocker.execute(select(Email.id).where(Email.id.in_(ids)).with_for_update())
        transport.release.set()
        await eventually(lambda: _waiting_on_a_lock(sessions), bool, what="recording to wait")
        assert len(transport.finished) == 3
        # Shutdown now: the server has accepted all three messages.
        delivering.cancel()
        await blocker.rollback()
    with contextlib.suppress(asyncio.CancelledError):
        await delivering

    emails = await stored_emails(sessions, ids)
    # Were the record rolled back with the cancel (as at bbc8556, where Deliverer._deliver
    # awaited it unshielded), they would stay `sending` until their lease expired, and
    # then be sent again.
    assert {i: (e.status, _outcomes(e)) for i, e in emails.items()} == {
        i: ("sent", [(1, "accepted", 250)]) for i in ids
    }


async def test_the_sweeper_leaves_a_batch_alone_while_its_job_waits_in_redis(
    client: httpx.AsyncClient,
    settings_factory: Callable[..., Settings],
    sessions: async_sessionmaker[AsyncSession],
    dispatcher: Dispatcher,
) -> None:
    response = await client.post("/send/batch", json={"emails": batch_items(4)})
    assert response.status_code == 202, response.text
    [job] = await _queued_jobs(dispatcher)
    assert job.name == BATCH_JOB_NAME
    # No worker: the batch job waits behind a backlog, past the sweeper's grace.
    sweeper = Sweeper(
        sessions=sessions, dispatcher=dispatcher, settings=settings_factory(sweep_grace=0)
    )
    redispatched = await sweeper.sweep_once()
    jobs = await _queued_jobs(dispatcher)
    assert (redispatched, [j.name for j in jobs]) == (0, [BATCH_JOB_NAME]), (
        "the sweeper took emails whose batch job Redis still holds for lost, and queued "
        "a single job for each of them as well"
    )


async def test_the_sweeper_redispatches_a_batch_redis_lost_as_single_jobs(
    client: httpx.AsyncClient,
    settings_factory: Callable[..., Settings],
    sessions: async_sessionmaker[AsyncSession],
    dispatcher: Dispatcher,
    memory: MemoryTransport,
) -> None:
    response = await client.post("/send/batch", json={"emails": batch_items(4)})
    assert response.status_code == 202, response.text
    ids = [uuid.UUID(item["id"]) for item in response.json()["data"]]
    # Redis forgets everything.
    await dispatcher.queue.obliterate(force=True)

    settings = settings_factory(sweep_grace=0)
    sweeper = Sweeper(sessions=sessions, dispatcher=dispatcher, settings=settings)
    assert await sweeper.sweep_once() == 4
    jobs = await _queued_jobs(dispatcher)
    assert sorted(job.id for job in jobs) == sorted(f"{i}-1" for i in ids)
    assert {job.name for job in jobs} == {JOB_NAME}
    # Sweeping again while those wait finds nothing lost.
    again = await sweeper.sweep_once()
    assert len(await _queued_jobs(dispatcher)) == 4
    assert again == 0, (
        f"the second sweep re-dispatched {again} emails whose single jobs Redis holds"
    )

    deliverer = make_deliverer(sessions, dispatcher, settings, memory)
    for job in jobs:
        assert await deliverer.deliver(DeliveryJob.from_data(job.data)) == "sent"
    assert len(memory.attempts) == 4
