"""When a sliding window counter has room again (the Retry-After of a 429)."""

from __future__ import annotations

import pytest

from mailroom.api.ratelimit import wait_for_room


@pytest.mark.parametrize(
    ("limit", "elapsed", "current", "previous", "expected"),
    [
        # Room now: nothing to wait for.
        (10, 0.5, 3, 0, 0.0),
        (10, 0.5, 3, 4, 0.0),
        # Full only because of the previous window: wait until its weight drops.
        # 10 * (1 - t) + 5 + 1 <= 10  ⇔  t >= 0.6
        (10, 0.25, 5, 10, 0.35),
        # Full with this window's own requests: into the next window, until they weigh 9.
        # 10 * (1 - t) + 1 <= 10  ⇔  t >= 0.1, plus the 0.75 left of this window
        (10, 0.25, 10, 0, 0.85),
        (3, 0.0, 3, 0, 1.0 + 1 / 3),
    ],
)
def test_wait_for_room(
    limit: int, elapsed: float, current: int, previous: int, expected: float
) -> None:
    assert wait_for_room(limit, 1.0, elapsed, current, previous) == pytest.approx(expected)
