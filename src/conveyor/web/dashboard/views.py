"""What each page reads from the store: only through the Backend interface, so that every
store shows the same dashboard. Lists are pages of ``Backend.list_jobs`` (a cursor, never an
offset): page 10,000 of a million jobs costs what page 1 costs."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from conveyor.backends.base import (
    Backend,
    JobFilter,
    MinuteCount,
    Page,
    QueueInfo,
    Stats,
    WorkerInfo,
)
from conveyor.exceptions import ConveyorError
from conveyor.job import WAITING_STATES, State
from conveyor.web.dashboard import chart

logger = logging.getLogger("conveyor.dashboard")

#: A worker whose last heartbeat is older than this (seconds) is marked stale (as the CLI does).
STALE_AFTER = 60.0
#: Jobs on one page of a list.
PAGE_SIZE = 50
#: The jobs the overview counts as waiting (queued, scheduled, retrying), as one filter.
WAITING = "waiting"
#: The order states are shown in.
STATES = [
    State.RUNNING,
    State.QUEUED,
    State.SCHEDULED,
    State.RETRYING,
    State.POISONED,
    State.SUCCEEDED,
    State.CANCELLING,
    State.CANCELLED,
]


@dataclass(frozen=True, slots=True)
class Overview:
    now: float
    queues: list[QueueInfo]
    workers: list[WorkerInfo]
    stats: Stats
    throughput: chart.Chart
    depth: chart.Chart


def waiting(info: QueueInfo) -> int:
    """The jobs ``empty`` deletes: scheduled, queued and retrying ones."""
    return sum(info.counts.get(state.value, 0) for state in WAITING_STATES)


def is_stale(worker: WorkerInfo, now: float) -> bool:
    return now - worker.heartbeat_at > STALE_AFTER


async def queues(backend: Backend) -> list[QueueInfo]:
    return sorted(await backend.list_queues(), key=lambda q: q.name)


async def queue(backend: Backend, name: str) -> QueueInfo | None:
    return next((q for q in await backend.list_queues() if q.name == name), None)


async def minute_counts(backend: Backend, since: float) -> list[MinuteCount]:
    """The store's per-minute counts since ``since``.

    Queue depths are sampled by the workers; the overview samples too (the store counts
    only in a minute that has none yet), so that a store whose workers are stopped
    still shows its backlog while someone looks.
    """
    try:
        await backend.sample_depth()
    except ConveyorError as exc:
        logger.warning("could not sample queue depths: %s", exc)
    return await backend.minute_counts(since)


async def overview(backend: Backend) -> Overview:
    now = await backend.now()
    counts = await minute_counts(backend, chart.since(now))
    return Overview(
        now=now,
        queues=await queues(backend),
        workers=await backend.list_workers(),
        stats=await backend.stats(),
        throughput=chart.throughput(counts, now),
        depth=chart.depth(counts, now),
    )


async def jobs(
    backend: Backend,
    states: frozenset[State] | None,
    queue: str | None,
    task: str | None,
    cursor: str | None,
) -> Page:
    return await backend.list_jobs(
        JobFilter(states=states, queue=queue, task=task), cursor, PAGE_SIZE
    )


def count_by_state(queues: list[QueueInfo], queue: str | None) -> dict[str, int]:
    """Jobs by state, of one queue or of all, from ``list_queues``' counts: one count of
    the store serves a page's queue names and its figures."""
    counts: dict[str, int] = {}
    for info in queues:
        if queue is None or info.name == queue:
            for state, count in info.counts.items():
                counts[state] = counts.get(state, 0) + count
    return counts
