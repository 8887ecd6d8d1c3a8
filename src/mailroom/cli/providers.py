"""`mailroom providers list`: each SMTP provider, its limits and its breaker (passwords masked)."""

from __future__ import annotations

import asyncio

import typer

from mailroom.cli.common import load_cli_settings

providers_app = typer.Typer(
    help="The SMTP providers the worker delivers through", no_args_is_help=True
)


@providers_app.command("list")
def list_providers() -> None:
    """Show each provider (SMTP_PROVIDERS, or SMTP_HOST) with its breaker as workers report it."""
    from redis.asyncio import Redis
    from redis.exceptions import RedisError

    from mailroom.transport.from_settings import SmtpSetupError, provider_configs
    from mailroom.transport.pacing import read_breakers

    settings = load_cli_settings()
    try:
        providers = provider_configs(settings)
    except SmtpSetupError as exc:
        typer.echo(f"Cannot read the providers: {exc}", err=True)
        raise typer.Exit(2) from None

    async def breakers() -> dict[str, str] | None:
        client = Redis.from_url(settings.redis_url, socket_timeout=2, socket_connect_timeout=2)
        try:
            return await read_breakers(client, settings.queue_prefix)
        except (RedisError, OSError):
            return None
        finally:
            await client.aclose()

    states = asyncio.run(breakers())
    for p in providers:
        if states is None:
            state = "unknown (Redis unreachable)"
        else:
            state = states.get(p.name, "unknown (no worker running)")
        rate = str(p.rate) if p.rate else "unlimited"
        daily = str(p.daily) if p.daily else "unlimited"
        typer.echo(
            f"{p.name}\tweight={p.weight}\trate={rate}\tdaily={daily}\tbreaker={state}\t"
            f"{p.masked_url()}"
        )
