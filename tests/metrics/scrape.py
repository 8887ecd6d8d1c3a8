"""Reading Prometheus text in tests: one sample's value, by name and exact labels."""

from __future__ import annotations

import socket

from prometheus_client.parser import text_string_to_metric_families


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(text: str, name: str, **labels: str) -> float:
    """The sample ``name`` with exactly ``labels``; 0 if it is not there (a counter not yet
    incremented looks the same)."""
    return samples(text).get((name, frozenset(labels.items())), 0.0)


def label_values(text: str, label: str) -> set[str]:
    """Every value ``label`` takes in the text."""
    return {dict(labels)[label] for _, labels in samples(text) if label in dict(labels)}


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port
