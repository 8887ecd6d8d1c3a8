"""Whatever a request may carry, once accepted, the worker builds it and it reads back as asked.

The property behind "nothing is accepted and then fails in the worker": text made of the
pieces injections are made of (encoded-words with and without whitespace, CR/LF, quotes,
brackets, direction overrides, joiners, non-ASCII) goes into every header-bound field. A
request that validates becomes an Email as POST /send makes it, build_message must write it,
and the message parsed back holds exactly the headers, names and file name given.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from email import message_from_bytes, policy
from email.headerregistry import AddressHeader
from email.message import EmailMessage
from typing import Any

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from mailroom.addresses import parse_mailbox
from mailroom.emails.attachments import Attachment
from mailroom.emails.message import build_message
from mailroom.emails.new_emails import new_email
from mailroom.emails.schemas.requests import SendEmailRequest
from mailroom.projects.models import DEFAULT_PROJECT_ID
from mailroom.settings import load_settings

SETTINGS = load_settings(_env_file=None, mail_from="Mailroom <no-reply@example.com>")
PIECES = [
    "=?utf-8?q?a=0D=0ABcc:=20x@evil.example?=",
    "=?utf-8?q?Invoice=0D=0AReply-To:=20x@evil.example=0D=0A=0D=0APay ?=",
    "=?UTF-8?B?DQpYLUluamVjdGVkOiAx?=",
    "=?utf-8 ?q?x?=",
    "=?",
    "?=",
    "\r\n",
    "\n",
    " ",
    '"',
    "\\",
    ",",
    ";",
    "<",
    ">",
    "@",
    "(",
    ")",
    ":",
    "é",
    "日本",
    "\U0001f469",
    "\u200d",
    "\u202e",
    "Bcc: victim@evil.example",
]
TEXT = st.lists(st.one_of(st.sampled_from(PIECES), st.text(max_size=8)), max_size=6).map("".join)
STANDARD = {
    "from",
    "to",
    "reply-to",
    "subject",
    "date",
    "message-id",
    "mime-version",
    "content-type",
    "content-transfer-encoding",
    "x-test",
}
PART_HEADERS = {"content-type", "content-transfer-encoding", "content-disposition", "mime-version"}


def _words(value: str) -> str:
    # Folding may change whitespace (and Python's own parser, reading a long display name
    # back, puts a space between the encoded-words RFC 2047 says to join): nothing else.
    return "".join(value.split())


def _request(subject: str, value: str, name: str, sender: str, filename: str) -> dict[str, Any]:
    return {
        "to": f"{name} <jane@example.com>",
        "from": f'"{sender}" <sender@example.com>',
        "replyTo": "support@example.com",
        "subject": subject,
        "text": "Hello",
        "headers": {"X-Test": value},
        "attachments": [{"filename": filename, "content": "aGk="}],
    }


PLAIN = {"subject": "Hello", "value": "v", "name": "Jane", "sender": "Acme", "filename": "f"}


@settings(max_examples=500, deadline=None, suppress_health_check=list(HealthCheck))
@given(field=st.sampled_from(sorted(PLAIN)), text=TEXT)
def test_an_accepted_email_is_built_and_reads_back_as_given(field: str, text: str) -> None:
    fields = {**PLAIN, field: text}
    subject, value, name = fields["subject"], fields["value"], fields["name"]
    sender, filename = fields["sender"], fields["filename"]
    try:
        request = SendEmailRequest.model_validate(
            _request(subject, value, name, sender, filename + ".txt")
        )
    except ValidationError:
        event("refused")
        return  # refused at acceptance: nothing reaches the worker
    email = new_email(
        request, SETTINGS, None, uuid.uuid4(), datetime.now(UTC), project_id=DEFAULT_PROJECT_ID
    )
    files = [
        Attachment(a.filename, a.content_type or "text/plain", a.content)
        for a in request.attachments
    ]

    parsed = message_from_bytes(build_message(email, files), policy=policy.default)

    assert isinstance(parsed, EmailMessage)
    names = [header.lower() for header in parsed]
    assert set(names) <= STANDARD and len(names) == len(set(names)), names
    assert {"from", "to", "reply-to", "subject", "x-test"} <= set(names)
    assert _words(str(parsed["Subject"])) == _words(request.subject)
    assert _words(str(parsed["X-Test"])) == _words(request.headers["X-Test"])
    to, sender_header = parsed["To"], parsed["From"]
    assert isinstance(to, AddressHeader)
    assert isinstance(sender_header, AddressHeader)
    # The name as the request's parser read it (quotes and escapes are syntax there).
    asked = parse_mailbox(f"{name} <jane@example.com>").name
    assert [(_words(a.display_name), a.addr_spec) for a in to.addresses] == [
        (_words(asked), "jane@example.com")
    ]
    assert [a.addr_spec for a in sender_header.addresses] == ["sender@example.com"]
    parts = [part for part in parsed.walk() if part is not parsed]
    assert all({h.lower() for h in part} <= PART_HEADERS for part in parts)
    assert [part.get_filename() for part in parsed.iter_attachments()] == [
        request.attachments[0].filename
    ]
