"""The worker registry's timing rules, checked when the settings load (see settings.py).

Kept apart from Settings so that the rules and their messages sit next to each other and
the settings module stays a list of settings.
"""

from __future__ import annotations


def timing_problems(*, heartbeat: float, takeover: float, lease: float) -> list[str]:
    """What is wrong with these WORKER_REGISTRY_INTERVAL, WORKER_TAKEOVER_AFTER and
    SENDING_LEASE values together (an empty list: nothing)."""
    problems: list[str] = []
    if takeover < 2 * heartbeat:
        problems.append(
            "WORKER_TAKEOVER_AFTER must be at least twice WORKER_REGISTRY_INTERVAL "
            f"(got {takeover:g} s and {heartbeat:g} s): otherwise one late heartbeat lets "
            "another worker take over a live worker's emails and send them twice"
        )
    if lease < heartbeat:
        problems.append(
            f"SENDING_LEASE must be at least WORKER_REGISTRY_INTERVAL (got {lease:g} s and "
            f"{heartbeat:g} s): a lease shorter than the heartbeat expires under a live worker"
        )
    return problems
