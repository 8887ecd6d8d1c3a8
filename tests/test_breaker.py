"""The Redis circuit breaker the dispatcher and the rate limiter share."""

from __future__ import annotations

from mailroom.breaker import REDIS_RETRY_AFTER, Breaker


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_it_starts_closed() -> None:
    assert not Breaker().is_open


def test_a_failure_opens_it_for_retry_after_seconds_then_redis_is_tried_again() -> None:
    clock = Clock()
    breaker = Breaker(clock=clock)
    breaker.trip()
    assert breaker.is_open
    clock.now += REDIS_RETRY_AFTER - 0.001
    assert breaker.is_open
    clock.now += 0.001
    assert not breaker.is_open


def test_a_failure_while_open_extends_it() -> None:
    clock = Clock()
    breaker = Breaker(retry_after=2.0, clock=clock)
    breaker.trip()
    clock.now += 1.5
    breaker.trip()
    clock.now += 1.5
    assert breaker.is_open
    clock.now += 0.5
    assert not breaker.is_open


def test_five_seconds_is_the_default() -> None:
    assert REDIS_RETRY_AFTER == 5.0
