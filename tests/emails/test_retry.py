"""Backoff and the decision after each attempt."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailroom.emails.retry import Decision, backoff_delay, decide
from mailroom.emails.states import DEFER, DELIVER, FAIL
from mailroom.transport.base import Outcome, SendResult, Stage


class _Fixed(random.Random):
    """A Random whose uniform() always lands at a chosen fraction of the interval."""

    def __init__(self, fraction: float) -> None:
        super().__init__(0)
        self.fraction = fraction

    def uniform(self, a: float, b: float) -> float:
        return a + (b - a) * self.fraction


def result(
    outcome: Outcome, code: int | None = None, retry_after: float | None = None
) -> SendResult:
    return SendResult(
        outcome=outcome, code=code, message="reply", stage=Stage.DATA, retry_after=retry_after
    )


# -- backoff_delay ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("attempt", "ceiling"),
    [(1, 30.0), (2, 60.0), (3, 120.0), (4, 240.0), (5, 480.0), (6, 960.0), (7, 1920.0)],
)
def test_backoff_ceiling_doubles_each_attempt(attempt: int, ceiling: float) -> None:
    assert backoff_delay(attempt, base=30, cap=3600, rng=_Fixed(1.0)) == ceiling
    assert backoff_delay(attempt, base=30, cap=3600, rng=_Fixed(0.0)) == ceiling / 2


@pytest.mark.parametrize("attempt", [8, 9, 20, 100])
def test_backoff_is_capped(attempt: int) -> None:
    assert backoff_delay(attempt, base=30, cap=3600, rng=_Fixed(1.0)) == 3600.0
    assert backoff_delay(attempt, base=30, cap=3600, rng=_Fixed(0.0)) == 1800.0


def test_backoff_midpoint_jitter() -> None:
    assert backoff_delay(3, base=10, cap=1000, rng=_Fixed(0.5)) == 30.0


def test_backoff_with_seeded_rng_is_reproducible() -> None:
    first = [backoff_delay(n, base=1, cap=60, rng=random.Random(42)) for n in range(1, 10)]
    second = [backoff_delay(n, base=1, cap=60, rng=random.Random(42)) for n in range(1, 10)]
    assert first == second


def test_backoff_grows_with_attempts_without_jitter_overlap() -> None:
    # Each slot's minimum (ceiling/2) equals the previous slot's maximum, so delays
    # never decrease from one attempt to the next until the cap is reached.
    rng = random.Random(7)
    delays = [backoff_delay(n, base=2, cap=10_000, rng=rng) for n in range(1, 12)]
    assert delays == sorted(delays)
    assert delays[-1] > 100 * delays[0] / 2


def test_backoff_jitter_varies() -> None:
    rng = random.Random(1)
    delays = {backoff_delay(5, base=30, cap=3600, rng=rng) for _ in range(50)}
    assert len(delays) > 40
    assert all(240.0 <= d <= 480.0 for d in delays)


@given(
    attempt=st.integers(min_value=1, max_value=100),
    base=st.floats(min_value=0.01, max_value=1000),
    cap_factor=st.floats(min_value=1, max_value=1000),
    seed=st.integers(min_value=0, max_value=2**32),
)
def test_backoff_stays_within_half_ceiling_and_ceiling(
    attempt: int, base: float, cap_factor: float, seed: int
) -> None:
    cap = base * cap_factor
    ceiling = min(cap, base * 2.0 ** (attempt - 1))
    delay = backoff_delay(attempt, base=base, cap=cap, rng=random.Random(seed))
    assert ceiling / 2 <= delay <= ceiling
    assert delay <= cap


@given(
    attempt=st.integers(min_value=1, max_value=60),
    base=st.floats(min_value=0.01, max_value=100),
)
def test_backoff_bounds_are_monotonic(attempt: int, base: float) -> None:
    cap = base * 1000
    low_now = backoff_delay(attempt, base=base, cap=cap, rng=_Fixed(0.0))
    high_now = backoff_delay(attempt, base=base, cap=cap, rng=_Fixed(1.0))
    low_next = backoff_delay(attempt + 1, base=base, cap=cap, rng=_Fixed(0.0))
    high_next = backoff_delay(attempt + 1, base=base, cap=cap, rng=_Fixed(1.0))
    assert low_now <= low_next
    assert high_now <= high_next
    assert high_now == pytest.approx(min(cap, base * 2.0 ** (attempt - 1)))


# -- decide -----------------------------------------------------------------------------


def decide_default(outcome_result: SendResult, attempt: int) -> Decision:
    return decide(
        outcome_result, attempt, max_attempts=5, base=30.0, cap=3600.0, rng=random.Random(0)
    )


@pytest.mark.parametrize("attempt", [1, 3, 5, 6, 50])
def test_accepted_is_delivered_on_any_attempt(attempt: int) -> None:
    decision = decide_default(result(Outcome.ACCEPTED, 250), attempt)
    assert decision == Decision(DELIVER)
    assert decision.transition is DELIVER
    assert decision.delay is None


@pytest.mark.parametrize("attempt", [1, 2, 4, 5])
def test_permanent_fails_at_once(attempt: int) -> None:
    decision = decide_default(result(Outcome.PERMANENT, 550), attempt)
    assert decision.transition is FAIL
    assert decision.delay is None


@pytest.mark.parametrize("outcome", [Outcome.TRANSIENT, Outcome.UNKNOWN])
@pytest.mark.parametrize("attempt", [1, 2, 3, 4])
def test_transient_and_unknown_defer_with_the_backoff_delay(outcome: Outcome, attempt: int) -> None:
    decision = decide(
        result(outcome, 451 if outcome is Outcome.TRANSIENT else None),
        attempt,
        max_attempts=5,
        base=30.0,
        cap=3600.0,
        rng=random.Random(99),
    )
    expected = backoff_delay(attempt, base=30.0, cap=3600.0, rng=random.Random(99))
    assert decision.transition is DEFER
    assert decision.delay == expected
    ceiling = 30.0 * 2 ** (attempt - 1)
    assert ceiling / 2 <= expected <= ceiling


@pytest.mark.parametrize("outcome", [Outcome.TRANSIENT, Outcome.UNKNOWN])
@pytest.mark.parametrize("attempt", [5, 6, 10])
def test_transient_and_unknown_fail_once_attempts_are_exhausted(
    outcome: Outcome, attempt: int
) -> None:
    decision = decide(
        result(outcome, 421), attempt, max_attempts=5, base=30.0, cap=3600.0, rng=random.Random(0)
    )
    assert decision == Decision(FAIL)


def test_single_attempt_budget_fails_on_first_transient() -> None:
    decision = decide(
        result(Outcome.TRANSIENT, 451), 1, max_attempts=1, base=1.0, cap=1.0, rng=random.Random(0)
    )
    assert decision.transition is FAIL


def test_full_sequence_of_transient_replies() -> None:
    rng = random.Random(3)
    transitions = [
        decide(result(Outcome.TRANSIENT, 451), n, max_attempts=4, base=1, cap=100, rng=rng)
        for n in range(1, 5)
    ]
    assert [d.transition for d in transitions] == [DEFER, DEFER, DEFER, FAIL]
    assert all(d.delay is not None for d in transitions[:3])
    assert transitions[3].delay is None


def test_retry_after_hint_longer_than_backoff_is_honoured() -> None:
    decision = decide(
        result(Outcome.TRANSIENT, 451, retry_after=600.0),
        1,
        max_attempts=5,
        base=30.0,
        cap=3600.0,
        rng=_Fixed(1.0),
    )
    assert decision.transition is DEFER
    assert decision.delay == 600.0


def test_retry_after_hint_shorter_than_backoff_keeps_the_backoff() -> None:
    decision = decide(
        result(Outcome.TRANSIENT, 451, retry_after=5.0),
        3,
        max_attempts=5,
        base=30.0,
        cap=3600.0,
        rng=_Fixed(1.0),
    )
    assert decision.delay == 120.0


def test_retry_after_hint_is_capped() -> None:
    decision = decide(
        result(Outcome.TRANSIENT, 421, retry_after=86_400.0),
        1,
        max_attempts=5,
        base=30.0,
        cap=3600.0,
        rng=_Fixed(0.0),
    )
    assert decision.transition is DEFER
    assert decision.delay == 3600.0


def test_retry_after_hint_does_not_stop_the_final_failure() -> None:
    decision = decide(
        result(Outcome.TRANSIENT, 421, retry_after=60.0),
        5,
        max_attempts=5,
        base=30.0,
        cap=3600.0,
        rng=random.Random(0),
    )
    assert decision == Decision(FAIL)


def test_retry_after_hint_is_ignored_for_permanent_replies() -> None:
    decision = decide(
        result(Outcome.PERMANENT, 550, retry_after=60.0),
        1,
        max_attempts=5,
        base=30.0,
        cap=3600.0,
        rng=random.Random(0),
    )
    assert decision == Decision(FAIL)


@given(
    attempt=st.integers(min_value=1, max_value=20),
    retry_after=st.none() | st.floats(min_value=0, max_value=1e7),
    seed=st.integers(min_value=0, max_value=2**32),
)
def test_deferral_delay_is_always_within_half_slot_and_cap(
    attempt: int, retry_after: float | None, seed: int
) -> None:
    decision = decide(
        result(Outcome.TRANSIENT, 451, retry_after=retry_after),
        attempt,
        max_attempts=21,
        base=10.0,
        cap=900.0,
        rng=random.Random(seed),
    )
    assert decision.transition is DEFER
    assert decision.delay is not None
    ceiling = min(900.0, 10.0 * 2 ** (attempt - 1))
    assert ceiling / 2 <= decision.delay <= 900.0
    if retry_after is not None:
        assert decision.delay >= min(900.0, retry_after)
    else:
        assert decision.delay <= ceiling


def test_an_interrupted_attempt_is_retried_soon_even_when_attempts_ran_out() -> None:
    interrupted = SendResult(Outcome.INTERRUPTED, None, "worker stopped")
    for attempt in (1, 5, 9):
        decision = decide(
            interrupted, attempt, max_attempts=5, base=30, cap=3600, rng=random.Random(1)
        )
        assert decision.transition is DEFER
        assert decision.delay is not None
        assert 15 <= decision.delay <= 30
