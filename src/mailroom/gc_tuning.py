"""Garbage-collector settings for the long-running processes (API, worker, dev).

CPython's cyclic collector walks every tracked object of a generation each time it runs,
and a full collection walks them all: the modules, routes, pydantic schemas and SQLAlchemy
mappings loaded at startup (hundreds of thousands of objects) on every one. In the API
under load those pauses were the tail of the latency and about a fifth of its throughput:
`make bench` ingest went from 1,385 to 1,650-1,850 requests/s and its p90 from 94 to
about 40 ms once startup's objects were frozen out of the collector's reach and the
youngest generation was collected less often. Cycles are still collected: only how
often changes, and what startup built (which lives as long as the process) is skipped.
"""

from __future__ import annotations

import gc

# Allocations between collections of the youngest generation (CPython's default: 700).
# A request or a delivery allocates a few thousand objects, nearly all freed by reference
# counting; collecting every 700 spent the time on objects that were about to go anyway.
YOUNG_THRESHOLD = 20_000


def tune_for_serving() -> None:
    """Call once, after startup's imports and before serving: a process-wide setting."""
    gc.collect()
    # Everything alive now is moved to a permanent generation no collection looks at.
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, middle, old)
