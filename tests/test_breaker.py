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


def test_it_opens_after_that_many_failures_in_a_row() -> None:
    breaker = Breaker(failures=3)
    breaker.failed()
    breaker.failed()
    assert not breaker.is_open
    breaker.failed()
    assert breaker.is_open


def test_a_success_starts_the_count_again() -> None:
    breaker = Breaker(failures=3)
    breaker.failed()
    breaker.failed()
    breaker.succeeded()
    breaker.failed()
    breaker.failed()
    assert not breaker.is_open


def test_an_outage_opens_it_at_once() -> None:
    breaker = Breaker(failures=3)
    breaker.failed(outage=True)
    assert breaker.is_open


def test_after_it_closes_again_the_count_starts_from_zero() -> None:
    clock = Clock()
    breaker = Breaker(failures=2, clock=clock)
    breaker.failed()
    breaker.failed()
    clock.now += REDIS_RETRY_AFTER
    assert not breaker.is_open
    breaker.failed()
    assert not breaker.is_open
