"""The overview's chart, drawn on the server as SVG: no chart library, no script.

Sent and failed are stacked bars per hour or day; each bar carries a <title> (the
browser's tooltip) and the figures are also in a table for screen readers.
"""

from __future__ import annotations

from dataclasses import dataclass

from mailroom.emails.report_repository import SeriesPoint

WIDTH, HEIGHT = 720, 200
TOP, BOTTOM, LEFT = 10, 24, 40  # margins, in the SVG's units


@dataclass(frozen=True)
class Bar:
    x: float
    width: float
    sent_y: float
    sent_height: float
    failed_y: float
    failed_height: float
    label: str  # under the bar, or "" (not every bar is labelled)
    title: str


@dataclass(frozen=True)
class Chart:
    width: int
    height: int
    bars: list[Bar]
    ticks: list[tuple[float, str]]  # (y, value) of the horizontal grid lines
    baseline: float
    left: int
    total: int


def bar_chart(points: list[SeriesPoint], *, unit: str) -> Chart:
    peak = max((p.sent + p.failed for p in points), default=0)
    scale_top = _nice(peak)
    plot = HEIGHT - TOP - BOTTOM
    slot = (WIDTH - LEFT) / max(1, len(points))
    every = max(1, len(points) // 8)  # about eight labels, whatever the range
    bars = []
    for i, p in enumerate(points):
        sent_h = plot * p.sent / scale_top
        failed_h = plot * p.failed / scale_top
        base = HEIGHT - BOTTOM
        when = p.start.strftime("%H:00") if unit == "hour" else p.start.strftime("%b %d")
        bars.append(
            Bar(
                x=round(LEFT + i * slot + slot * 0.15, 1),
                width=round(slot * 0.7, 1),
                sent_y=round(base - sent_h, 1),
                sent_height=round(sent_h, 1),
                failed_y=round(base - sent_h - failed_h, 1),
                failed_height=round(failed_h, 1),
                label=when if i % every == 0 else "",
                title=f"{when}: {p.sent} sent, {p.failed} failed",
            )
        )
    ticks = [
        (round(HEIGHT - BOTTOM - plot * f, 1), f"{round(scale_top * f):,}") for f in (0.5, 1.0)
    ]
    return Chart(
        WIDTH, HEIGHT, bars, ticks, HEIGHT - BOTTOM, LEFT, sum(p.sent + p.failed for p in points)
    )


def _nice(value: int) -> int:
    """The smallest of 1, 2 or 5 times a power of ten at or above ``value`` (at least 4)."""
    magnitude = 1
    while True:
        for step in (1, 2, 5):
            if step * magnitude >= max(value, 4):
                return step * magnitude
        magnitude *= 10
