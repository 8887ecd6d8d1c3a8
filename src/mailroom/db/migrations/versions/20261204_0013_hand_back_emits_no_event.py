"""hand-back emits no event: a claim given back unsent is not a status change to report

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-04 00:00:00

A worker that cannot get a provider's pacing slot hands its claimed emails back: ``sending``
returns to ``queued`` or ``retrying`` with the claim's attempt given back (``attempts`` one
lower). Nothing happened from a receiver's point of view (``sending`` itself emits nothing),
so ``mailroom_event_updated`` skips a row leaving ``sending`` with fewer attempts than it
had: only a hand-back does that. A real temporary failure (``sending`` to ``retrying`` with
its attempt recorded) keeps its ``email.retrying``; a takeover of a dead worker's email
(``sending`` to ``sending``) and the sweeper (no status change) emit nothing anyway.

The function's other text (the event's ``data``, kept in step with
``mailroom.webhooks.events.EMAIL_DATA``) stays as it is: its stored definition is edited
in place, and the edit fails loudly if that definition is not the one expected.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_BEFORE = "AND n.status NOT IN ('sending', 'bounced')"
_AFTER = (
    "AND n.status NOT IN ('sending', 'bounced')\n"
    "          AND NOT (o.status = 'sending' AND n.attempts < o.attempts)"
)


def _edit(old: str, new: str) -> None:
    """Replace ``old`` by ``new`` in mailroom_event_updated()'s stored definition."""
    quoted_old, quoted_new = (s.replace("'", "''") for s in (old, new))
    op.execute(
        f"""
        DO $$
        DECLARE
            definition text := pg_get_functiondef('mailroom_event_updated()'::regprocedure);
        BEGIN
            IF strpos(definition, '{quoted_old}') = 0 THEN
                RAISE EXCEPTION 'mailroom_event_updated() is not the definition expected';
            END IF;
            EXECUTE replace(definition, '{quoted_old}', '{quoted_new}');
        END
        $$
        """
    )


def upgrade() -> None:
    _edit(_BEFORE, _AFTER)


def downgrade() -> None:
    _edit(_AFTER, _BEFORE)
