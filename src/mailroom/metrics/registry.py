"""Where the metrics live, and how a scrape turns them into Prometheus' text format.

The API's metrics and the worker's are kept apart (``mailroom dev`` runs both in one
process, and each endpoint shows its own).

Multi-process mode: ``mailroom api --processes N`` runs N uvicorn processes behind one
port, so a scrape reaches one of them. ``run_api_processes`` therefore sets
``PROMETHEUS_MULTIPROC_DIR`` to a fresh directory before it starts them; prometheus_client
then keeps each process's values in files there, and a scrape, whichever process
answers it, adds up the files of every process (dead ones included, so totals never go
back). prometheus_client reads the variable when it is first imported, which is why the
parent sets it for its children rather than each process for itself.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager

from prometheus_client import (
    CONTENT_TYPE_PLAIN_0_0_4,
    CollectorRegistry,
    GCCollector,
    PlatformCollector,
    ProcessCollector,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.metrics_core import Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

MULTIPROC_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"
# The classic text format: every Prometheus version reads it, and it is what is generated.
CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4

# No `*_created` series: multi-process mode cannot have them, so neither mode does.
disable_created_metrics()  # type: ignore[no-untyped-call]

API_REGISTRY = CollectorRegistry()
WORKER_REGISTRY = CollectorRegistry()
for _registry in (API_REGISTRY, WORKER_REGISTRY):
    # CPU, memory, file descriptors, Python's GC. Not in multi-process mode: they
    # describe one process, and a scrape there reads only the shared files.
    ProcessCollector(registry=_registry)
    PlatformCollector(registry=_registry)
    GCCollector(registry=_registry)


def multiprocess_dir() -> str | None:
    """The multi-process directory this process writes to, if it runs in that mode."""
    return os.environ.get(MULTIPROC_DIR_ENV) or None


@contextmanager
def multiprocess_directory() -> Iterator[str]:
    """Processes started inside this block share a fresh metrics directory; removed after.

    Always a new directory: files left by an earlier run would be added to this one's.
    """
    path = tempfile.mkdtemp(prefix="mailroom-metrics-")
    previous = os.environ.get(MULTIPROC_DIR_ENV)
    os.environ[MULTIPROC_DIR_ENV] = path
    try:
        yield path
    finally:
        if previous is None:
            os.environ.pop(MULTIPROC_DIR_ENV, None)
        else:
            os.environ[MULTIPROC_DIR_ENV] = previous
        shutil.rmtree(path, ignore_errors=True)


class Families:
    """A collector of metric families computed beforehand (e.g. by an async scrape)."""

    def __init__(self, families: Iterable[Metric]) -> None:
        self._families = list(families)

    def collect(self) -> Iterable[Metric]:
        return iter(self._families)


class _Delegate:
    """Another registry's metrics, so one scrape can combine registries."""

    def __init__(self, source: Collector) -> None:
        self._source = source

    def collect(self) -> Iterable[Metric]:
        return self._source.collect()


def combine(*sources: Collector) -> CollectorRegistry:
    """One registry collecting from several (none of them is changed)."""
    combined = CollectorRegistry(auto_describe=False)
    for source in sources:
        combined.register(_Delegate(source))
    return combined


def render(
    registry: CollectorRegistry,
    extra: Sequence[Metric] = (),
    *,
    multiprocess_path: str | None = None,
) -> bytes:
    """The text a scrape gets: ``registry`` (or, in multi-process mode, every process's
    files in ``multiprocess_path``) followed by ``extra``."""
    scrape = CollectorRegistry(auto_describe=False)
    if multiprocess_path is not None:
        MultiProcessCollector(scrape, path=multiprocess_path)  # type: ignore[no-untyped-call]
    else:
        scrape.register(_Delegate(registry))
    scrape.register(Families(extra))
    return generate_latest(scrape)
