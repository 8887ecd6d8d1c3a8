"""What the API's lifespan builds and every request can reach."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from mailroom.api.ratelimit import SendRateLimiter
from mailroom.auth.service import KeyChecker
from mailroom.devinbox.store import Inbox
from mailroom.emails.intake import Intake
from mailroom.feedback.intake import FeedbackIntake
from mailroom.feedback.ses import SnsVerifier
from mailroom.queue.dispatcher import Dispatcher
from mailroom.settings import Settings


@dataclass
class AppState:
    settings: Settings
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    dispatcher: Dispatcher
    keys: KeyChecker
    rate_limiter: SendRateLimiter
    intake: Intake
    sns: SnsVerifier
    feedback: FeedbackIntake
    inbox: Inbox | None = None
