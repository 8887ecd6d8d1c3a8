"""`mailroom bounces`: the SMTP/LMTP listener for DSN and ARF reports, and the reports
that matched no email."""

from __future__ import annotations

from typing import Annotated

import typer

from mailroom.cli.common import in_one_transaction, load_cli_settings, run_server, stop_event


def bounces(
    host: Annotated[str, typer.Option(help="Interface to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port to listen on")] = 2525,
    lmtp: Annotated[bool, typer.Option("--lmtp", help="Speak LMTP instead of SMTP")] = False,
    unmatched: Annotated[
        bool,
        typer.Option("--unmatched", help="List the reports that matched no email, and exit"),
    ] = False,
) -> None:
    """Receive bounce (DSN) and complaint (ARF) reports by mail and apply them to emails."""
    if unmatched:
        _list_unmatched()
        return
    settings = load_cli_settings()

    async def main() -> None:
        import structlog

        from mailroom.db.engine import open_database
        from mailroom.feedback import listener

        async with open_database(settings, pool_size=5) as sessions:
            server = await listener.start(sessions, settings, host, port, lmtp=lmtp)
            structlog.get_logger("mailroom.bounces").info(
                "bounces.listening", host=host, port=port, lmtp=lmtp
            )
            try:
                await stop_event().wait()
            finally:
                server.close()
                await server.wait_closed()

    run_server(main)


def _list_unmatched() -> None:
    from mailroom.feedback.service import list_unmatched

    page = in_one_transaction(lambda session: list_unmatched(session, limit=100))
    for item in page.data:
        typer.echo(
            f"{item.received_at.isoformat()}  {item.provider:8}  {item.kind:10}  "
            f"{item.message_id or '-'}  {item.reason or ''}"
        )
    if page.has_more:
        typer.echo("(the 100 newest; GET /feedback/unmatched pages through all)", err=True)
