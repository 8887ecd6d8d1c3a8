"""The serving processes freeze what startup built and collect the young generation less often.

Checked in a fresh interpreter: the settings are process-wide, and freezing the test
process would keep every test's garbage alive.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from mailroom.gc_tuning import YOUNG_THRESHOLD

pytestmark = pytest.mark.slow  # each test starts a Python interpreter

_PROBE = """
import gc, json
before = gc.get_threshold()
{setup}
print(json.dumps({{"frozen": gc.get_freeze_count(), "threshold": gc.get_threshold(),
                   "before": before}}))
"""


def _probe(setup: str) -> dict[str, list[int] | int]:
    env = {**os.environ, "DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none"}
    done = subprocess.run(
        [sys.executable, "-c", _PROBE.format(setup=setup)],
        env=env,
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode()
    result: dict[str, list[int] | int] = json.loads(done.stdout)
    return result


def test_tuning_freezes_startup_and_raises_only_the_young_threshold() -> None:
    found = _probe("from mailroom.gc_tuning import tune_for_serving; tune_for_serving()")
    assert isinstance(found["frozen"], int) and found["frozen"] > 1_000
    threshold, before = found["threshold"], found["before"]
    assert isinstance(threshold, list) and isinstance(before, list)
    assert threshold == [YOUNG_THRESHOLD, before[1], before[2]]


def test_each_process_of_a_multi_process_api_is_tuned_with_its_app_built() -> None:
    found = _probe("from mailroom.api.server import served_app; served_app()")
    # The app's routes and schemas are among the frozen objects: far more than the
    # interpreter's own start-up.
    bare = _probe("from mailroom.gc_tuning import tune_for_serving; tune_for_serving()")
    assert isinstance(found["frozen"], int) and isinstance(bare["frozen"], int)
    assert found["frozen"] > bare["frozen"]
    assert isinstance(found["threshold"], list) and found["threshold"][0] == YOUNG_THRESHOLD
