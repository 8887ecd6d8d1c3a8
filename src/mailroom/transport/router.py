"""Several providers behind one transport: weighted choice, pacing, failover.

For each email the router takes the providers whose ``from=`` rules admit its sender
and whose circuit breaker lets mail through, orders them by weight (a weighted random
order, so that each gets its share; weight 0 only when the others cannot), and asks
the pacer for a slot. It then sends through that provider and reads the answer
(``provider_faults``):

- a throttling answer is no attempt: the provider is slowed down for a while and the
  email goes on to the next provider at once;
- a provider-level failure opens that provider's breaker; the answer is returned as an
  attempt marked ``retry_now`` when another provider is healthy, so that the next
  attempt comes at once, there (a 5.7.x refusal of the sender then is no longer final);
- anything else is the email's answer and is returned as it is.

When no provider can take the email within ``hold`` seconds (rates, daily quotas,
every breaker open), the result is ``PACED``: no attempt; it waits until capacity returns.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

import structlog

from mailroom.periodic import every
from mailroom.transport.base import Envelope, MailTransport, Outcome, SendResult
from mailroom.transport.pacing import Grant, Lane, LocalPacer, Pacer
from mailroom.transport.provider_breaker import BreakerState, ProviderBreaker
from mailroom.transport.provider_config import ProviderConfig
from mailroom.transport.provider_faults import MAIL_4XX_IN_A_ROW, Fault, fault_of

log = structlog.get_logger(__name__)

HOLD = 10.0  # seconds an email may wait for its slot while its worker holds it
THROTTLE_PAUSE = 60.0  # seconds a throttled provider stays slowed down, unless it says
_HEARTBEAT = 5.0


@dataclass
class Provider:
    config: ProviderConfig
    transport: MailTransport
    breaker: ProviderBreaker
    mail_4xx: int = 0  # temporary refusals of MAIL FROM in a row
    counts: dict[str, int] = field(
        default_factory=lambda: {"sent": 0, "failed": 0, "throttled": 0, "paced": 0}
    )

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def lane(self) -> Lane:
        rate = self.config.rate
        return Lane(self.name, 1.0 / rate.per_second if rate else 0.0, self.config.daily)


def paced(wait: float, reason: str) -> SendResult:
    return SendResult(Outcome.PACED, None, reason, retry_after=max(wait, 0.0))


class ProviderRouter:
    def __init__(
        self,
        providers: Sequence[tuple[ProviderConfig, MailTransport]],
        *,
        pacer: Pacer | None = None,
        cooldown: float = 30.0,
        hold: float = HOLD,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.providers = [
            Provider(config, transport, ProviderBreaker(cooldown, clock=clock))
            for config, transport in providers
        ]
        self.pacer = pacer
        self._local = LocalPacer()
        self._hold = hold
        self._rng = rng or random.Random()
        self._heartbeat: asyncio.Task[None] | None = None

    @property
    def open_connections(self) -> int:
        return sum(getattr(p.transport, "open_connections", 0) for p in self.providers)

    def stats(self) -> list[dict[str, object]]:
        """Each provider's counters, breaker and current rate (for metrics and the CLI)."""
        return [
            {
                "name": p.name,
                **p.counts,
                "breaker": p.breaker.state.value,
                "rate": self.current_rate(p),
            }
            for p in self.providers
        ]

    def current_rate(self, provider: Provider) -> float | None:
        """Messages per second now allowed (None: no rate), slowdowns included."""
        rate = provider.config.rate
        if rate is None:
            return None
        source = self.pacer if self.pacer is not None else self._local
        return rate.per_second / source.slowdown(provider.name)

    async def send(self, envelope: Envelope) -> SendResult:
        self._start_heartbeat()
        domain = envelope.sender.rpartition("@")[2].lower()
        eligible = [p for p in self.providers if p.config.accepts(domain)]
        if not eligible:
            return SendResult(
                Outcome.PERMANENT,
                None,
                f"No provider of SMTP_PROVIDERS takes mail from @{domain} (see their from= rules)",
            )
        throttled: set[str] = set()
        for _ in range(len(eligible) + 1):
            candidates = [
                p
                for p in self._ordered(eligible)
                if p.name not in throttled and p.breaker.available()
            ]
            if not candidates:
                break
            grant = await self._reserve([p.lane for p in candidates])
            if grant.lane is None:
                for p in candidates:
                    p.counts["paced"] += 1
                what = "daily quota" if grant.daily_exhausted else "rate"
                return paced(grant.wait, f"Paced: every provider is at its {what}")
            provider = next(p for p in candidates if p.name == grant.lane.name)
            if not provider.breaker.take():
                continue  # another email took the half-open probe meanwhile
            if grant.wait > 0:
                await asyncio.sleep(grant.wait)
            result = await self._send(provider, envelope)
            if result is None:
                throttled.add(provider.name)
                continue
            return result
        if throttled:
            return paced(1.0, "Paced: every provider is throttling")
        wait = min(p.breaker.reopens_in for p in eligible)
        return paced(max(wait, 1.0), "Paced: every provider is failing (circuit breakers open)")

    async def _send(self, provider: Provider, envelope: Envelope) -> SendResult | None:
        """The attempt's result; None for a throttling answer (no attempt)."""
        try:
            result = await provider.transport.send(envelope)
        except BaseException:
            provider.breaker.released()
            raise
        result = replace(result, provider=provider.name)
        fault = fault_of(result)
        if fault is Fault.THROTTLE:
            provider.breaker.succeeded()
            provider.counts["throttled"] += 1
            await self._slow_down(provider, result)
            return None
        if fault is Fault.MAIL_4XX:
            provider.mail_4xx += 1
            if provider.mail_4xx >= MAIL_4XX_IN_A_ROW:
                fault = Fault.PROVIDER
            else:
                provider.breaker.released()
        else:
            provider.mail_4xx = 0
        provider.counts["sent" if result.outcome is Outcome.ACCEPTED else "failed"] += 1
        if fault is Fault.PROVIDER:
            return self._fail_over(provider, result)
        if fault is Fault.NONE and provider.breaker.succeeded():
            log.info("provider.recovered", provider=provider.name)
        return result

    def _fail_over(self, provider: Provider, result: SendResult) -> SendResult:
        provider.mail_4xx = 0
        opened = provider.breaker.failed()
        others = [p.name for p in self.providers if p is not provider and p.breaker.available()]
        (log.warning if opened else log.debug)(
            "provider.breaker_opened" if opened else "provider.still_failing",
            provider=provider.name,
            code=result.code,
            enhanced_code=result.enhanced_code,
            stage=result.stage.value if result.stage else None,
            reply=result.message,
            cooldown_s=provider.breaker.reopens_in,
            failover_to=others,
        )
        if not others:
            return result
        outcome = Outcome.TRANSIENT if result.outcome is Outcome.PERMANENT else result.outcome
        return replace(result, outcome=outcome, retry_now=True)

    async def _slow_down(self, provider: Provider, result: SendResult) -> None:
        seconds = result.retry_after or THROTTLE_PAUSE
        if self.pacer is not None:
            divisor = await self.pacer.slow_down(provider.name, seconds)
        else:
            divisor = self._local.slow_down(provider.name, seconds)
        log.warning(
            "provider.throttled",
            provider=provider.name,
            code=result.code,
            enhanced_code=result.enhanced_code,
            reply=result.message,
            rate_divided_by=divisor,
            for_s=seconds,
        )

    async def _reserve(self, lanes: list[Lane]) -> Grant:
        if self.pacer is not None:
            return await self.pacer.reserve(lanes, self._hold)
        return self._local.reserve(lanes, self._hold)

    def _ordered(self, providers: list[Provider]) -> list[Provider]:
        """A weighted random order: each provider first in proportion to its weight."""

        def key(p: Provider) -> float:
            weight = p.config.weight
            return self._rng.random() ** (1.0 / weight) if weight > 0 else -1.0

        return sorted(providers, key=key, reverse=True)

    def _start_heartbeat(self) -> None:
        if self._heartbeat is None and self.pacer is not None:
            self._heartbeat = asyncio.ensure_future(
                every(_HEARTBEAT, self._beat, event="pacing.heartbeat_failed", first_delay=0)
            )

    async def _beat(self) -> None:
        if self.pacer is not None:
            await self.pacer.heartbeat()
            await self.pacer.publish({p.name: p.breaker.state for p in self.providers})

    async def aclose(self) -> None:
        if self._heartbeat is not None:
            self._heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._heartbeat
        if self.pacer is not None:
            await self.pacer.leave()
        await asyncio.gather(*(p.transport.aclose() for p in self.providers))


__all__ = ["BreakerState", "ProviderRouter"]
