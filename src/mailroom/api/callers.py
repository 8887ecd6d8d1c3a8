"""The authenticated caller as the routes on existing emails take it.

A route declares one of these instead of a bare scope dependency when its use case needs
to know who calls: ``caller.access`` says which projects' emails it reaches, and
``caller.project`` is the key's own project.
"""

from __future__ import annotations

from typing import Annotated

from mailroom.api.security import EmailsWriter, LogsReader, SuppressionsWriter, WebhooksWriter
from mailroom.auth.service import Principal

LogsCaller = Annotated[Principal, LogsReader]
EmailsCaller = Annotated[Principal, EmailsWriter]
SuppressionsCaller = Annotated[Principal, SuppressionsWriter]
WebhooksCaller = Annotated[Principal, WebhooksWriter]
