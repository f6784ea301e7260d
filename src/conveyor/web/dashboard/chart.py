"""The overview's charts, drawn as inline SVG: no script, no library.

:func:`throughput` makes the bars of runs per minute (the failed part of each bar apart)
and :func:`depth` the lines of queued jobs per queue, over the last hour, from the store's
per-minute counts (``Backend.minute_counts``). This module only computes the geometry,
in the units of the SVG's ``viewBox``; the ``_charts.html`` template draws it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from conveyor.web.dashboard.bidi import isolate

WIDTH = 600
HEIGHT = 170
LEFT, RIGHT, TOP, BOTTOM = 42, 8, 18, 24
MINUTES = 60
#: Lines drawn one per queue, the busiest first; the rest are summed into "other queues".
MAX_LINES = 5


class MinuteFigures(Protocol):
    """One queue's figures for one minute (``conveyor.backends.base.MinuteCount``)."""

    @property
    def minute(self) -> float: ...
    @property
    def queue(self) -> str: ...
    @property
    def processed(self) -> int: ...
    @property
    def failed(self) -> int: ...
    @property
    def depth(self) -> int | None: ...


@dataclass(frozen=True, slots=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    kind: str  # "ok" or "failed"
    title: str


@dataclass(frozen=True, slots=True)
class Line:
    label: str
    points: str  # "x,y x,y ..." for <polyline>
    last: int
    series: int  # colour index, 0..MAX_LINES


@dataclass(frozen=True, slots=True)
class Tick:
    at: float
    label: str


@dataclass(frozen=True, slots=True)
class Chart:
    title: str
    summary: str  # what a screen reader hears, and the figure's caption
    empty: bool
    bars: list[Bar]
    lines: list[Line]
    y_ticks: list[Tick]
    x_ticks: list[Tick]
    width: int = WIDTH
    height: int = HEIGHT
    left: int = LEFT
    right: int = WIDTH - RIGHT
    top: int = TOP
    bottom: int = HEIGHT - BOTTOM


def _first_minute(now: float) -> float:
    return (math.floor(now / 60) - (MINUTES - 1)) * 60.0


def since(now: float) -> float:
    """The start of the oldest minute the charts show."""
    return _first_minute(now)


def _slot_width() -> float:
    return (WIDTH - LEFT - RIGHT) / MINUTES


def _x(slot: float) -> float:
    return LEFT + slot * _slot_width()


def _y(value: float, top_value: float) -> float:
    plot = HEIGHT - BOTTOM - TOP
    return HEIGHT - BOTTOM - plot * (value / top_value if top_value else 0)


def _nice_top(value: float) -> int:
    """The y axis's top: 1, 2, 5 times a power of ten, at least ``value``."""
    if value <= 1:
        return 1
    power = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 5, 10):
        if step * power >= value:
            return int(step * power)
    return int(10 * power)


def _y_ticks(top_value: int) -> list[Tick]:
    return [Tick(_y(v, top_value), f"{v:,}") for v in sorted({0, top_value // 2, top_value})]


def _x_ticks() -> list[Tick]:
    return [
        Tick(_x(slot), f"-{MINUTES - slot} min" if slot < MINUTES else "now")
        for slot in (0, 15, 30, 45, MINUTES)
    ]


def _clock(minute: float) -> str:
    return time.strftime("%H:%M", time.gmtime(minute)) + " UTC"


def throughput(counts: Iterable[MinuteFigures], now: float) -> Chart:
    """Runs per minute over the last hour, all queues; the failed ones apart."""
    first = _first_minute(now)
    processed = [0] * MINUTES
    failed = [0] * MINUTES
    for count in counts:
        slot = int((count.minute - first) // 60)
        if 0 <= slot < MINUTES:
            processed[slot] += count.processed
            failed[slot] += count.failed
    total, total_failed = sum(processed), sum(failed)
    top_value = _nice_top(max(processed, default=0))
    bars: list[Bar] = []
    gap = 1.0 if _slot_width() > 4 else 0.0
    for slot in range(MINUTES):
        if not processed[slot]:
            continue
        ok = processed[slot] - failed[slot]
        title = f"{_clock(first + slot * 60)}: {processed[slot]:,} runs, {failed[slot]:,} failed"
        x, width = _x(slot) + gap / 2, _slot_width() - gap
        y_ok = _y(ok, top_value)
        if ok:
            bars.append(Bar(x, y_ok, width, HEIGHT - BOTTOM - y_ok, "ok", title))
        if failed[slot]:
            y_failed = _y(processed[slot], top_value)
            bars.append(Bar(x, y_failed, width, y_ok - y_failed, "failed", title))
    return Chart(
        title="Runs per minute",
        summary=f"Last hour: {total:,} runs, {total_failed:,} failed.",
        empty=not total,
        bars=bars,
        lines=[],
        y_ticks=_y_ticks(top_value),
        x_ticks=_x_ticks(),
    )


def depth(counts: Sequence[MinuteFigures], now: float) -> Chart:
    """Queued jobs per queue, as sampled each minute, over the last hour."""
    first = _first_minute(now)
    by_queue: dict[str, dict[int, int]] = {}
    for count in counts:
        slot = int((count.minute - first) // 60)
        if count.depth is not None and 0 <= slot < MINUTES:
            by_queue.setdefault(count.queue, {})[slot] = count.depth
    # Queues that stayed empty all hour are left out, unless no queue had a backlog.
    busy = {q: v for q, v in by_queue.items() if max(v.values())}
    by_queue = busy or by_queue
    ranked = sorted(by_queue, key=lambda q: (-max(by_queue[q].values()), q))
    series = {q: by_queue[q] for q in ranked[:MAX_LINES]}
    if len(ranked) > MAX_LINES:
        other: dict[int, int] = {}
        for queue in ranked[MAX_LINES:]:
            for slot, value in by_queue[queue].items():
                other[slot] = other.get(slot, 0) + value
        series[f"{len(ranked) - MAX_LINES} other queues"] = other
    top_value = _nice_top(max((max(s.values()) for s in series.values()), default=0))
    lines = []
    for index, (label, values) in enumerate(series.items()):
        slots = sorted(values)
        points = " ".join(
            f"{_x(slot + 0.5):.1f},{_y(values[slot], top_value):.1f}" for slot in slots
        )
        if len(slots) == 1:  # one sample: a short flat line, so that it shows
            x, y = _x(slots[0] + 0.5), _y(values[slots[0]], top_value)
            points = f"{x - 3:.1f},{y:.1f} {x + 3:.1f},{y:.1f}"
        lines.append(Line(label, points, values[slots[-1]], index))
    latest = ", ".join(f"{isolate(line.label)} {line.last:,}" for line in lines)
    return Chart(
        title="Queued jobs",
        summary=f"Queued jobs as last sampled: {latest}." if lines else "No samples yet.",
        empty=not lines,
        bars=[],
        lines=lines,
        y_ticks=_y_ticks(top_value),
        x_ticks=_x_ticks(),
    )
