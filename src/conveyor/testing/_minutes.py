"""Conformance: counts per queue and minute, behind the dashboard's throughput chart
(``minute_counts``, ``sample_depth``).

Each test uses queues of its own (a shared store keeps the minutes of earlier tests),
and reads back only those queues.
"""

from __future__ import annotations

import asyncio
import uuid

import pytest

from conveyor.backends.base import Backend, MinuteCount
from conveyor.job import Outcome
from conveyor.testing.harness import async_test, claim_one, error, make_job


def _queue(name: str = "q") -> str:
    """A queue name no other test uses."""
    return f"minutes-{name}-{uuid.uuid4().hex[:8]}"


def _minute(t: float) -> float:
    return float(int(t // 60) * 60)


async def _counts(backend: Backend, since: float, *queues: str) -> list[MinuteCount]:
    """The minutes of ``queues`` since ``since``, as the backend returns them."""
    return [row for row in await backend.minute_counts(since) if row.queue in queues]


def _totals(rows: list[MinuteCount]) -> dict[str, tuple[int, int]]:
    """Per queue, (processed, failed) over all its minutes."""
    totals: dict[str, tuple[int, int]] = {}
    for row in rows:
        processed, failed = totals.get(row.queue, (0, 0))
        totals[row.queue] = (processed + row.processed, failed + row.failed)
    return totals


class MinuteConformance:
    """Runs ended and jobs waiting, per queue and minute of the store's clock."""

    @async_test
    async def test_a_finished_batch_counts_in_the_current_minute_per_queue(
        self, backend: Backend
    ) -> None:
        # Given three running jobs of one queue and two of another
        a, b = _queue("a"), _queue("b")
        await backend.enqueue([make_job(a) for _ in range(3)] + [make_job(b) for _ in range(2)])
        jobs = await backend.claim([a, b], "worker-1", 10, 60.0)
        start = await backend.now()

        # When they finish in one batch
        await backend.finish([(job, Outcome.succeeded()) for job in jobs])
        end = await backend.now()

        # Then each queue has one minute, the one they ended in, with its runs
        rows = await _counts(backend, _minute(start) - 60, a, b)
        assert [(r.queue, r.processed, r.failed, r.depth) for r in rows] == [
            (a, 3, 0, None),
            (b, 2, 0, None),
        ]
        assert rows[0].minute == rows[1].minute
        assert rows[0].minute in (_minute(start), _minute(end))
        assert rows[0].minute % 60 == 0

    @async_test
    async def test_failures_count_as_the_stats_count_them(self, backend: Backend) -> None:
        # Given five running jobs of a queue
        q = _queue()
        await backend.enqueue([make_job(q) for _ in range(5)])
        jobs = await backend.claim([q], "worker-1", 5, 60.0)
        before = await backend.stats()
        start = await backend.now()

        # When they end every way a run can: succeeded, retried after a failure,
        # snoozed (the attempt given back), poisoned, cancelled
        outcomes = [
            Outcome.succeeded(),
            Outcome.retry_in(30.0, error("boom")),
            Outcome.retry_in(30.0, None, count_attempt=False),
            Outcome.poisoned(error("gave up")),
            Outcome.cancelled(None),
        ]
        await backend.finish(list(zip(jobs, outcomes, strict=True)))
        after = await backend.stats()

        # Then the queue's minutes count five runs and two failures, as the totals do
        assert _totals(await _counts(backend, _minute(start) - 60, q)) == {q: (5, 2)}
        assert (after.processed - before.processed, after.failed - before.failed) == (5, 2)

    @async_test
    async def test_a_run_lost_with_its_lease_counts_as_failed(self, backend: Backend) -> None:
        # Given a job whose worker stopped renewing its lease
        q = _queue()
        await backend.enqueue([make_job(q)])
        await claim_one(backend, q, lease=0.05)
        before = await backend.stats()
        start = await backend.now()
        await asyncio.sleep(0.15)

        # When any worker recovers it
        recovered = await backend.recover_expired()

        # Then the lost run counts as processed and failed, in the minutes as in the totals
        assert len(recovered) == 1
        after = await backend.stats()
        assert _totals(await _counts(backend, _minute(start) - 60, q)) == {q: (1, 1)}
        assert (after.processed - before.processed, after.failed - before.failed) == (1, 1)

    @async_test
    async def test_since_and_queue_select_the_minutes(self, backend: Backend) -> None:
        # Given one run finished in each of two queues
        a, b = _queue("a"), _queue("b")
        await backend.enqueue([make_job(a), make_job(b)])
        jobs = await backend.claim([a, b], "worker-1", 2, 60.0)
        await backend.finish([(job, Outcome.succeeded()) for job in jobs])
        (minute,) = {r.minute for r in await _counts(backend, 0.0, a, b)}

        # When the minutes are read from the minute's start, from just after it,
        # and for one queue
        from_start = await _counts(backend, minute, a, b)
        after_start = await _counts(backend, minute + 1, a, b)
        only_a = await backend.minute_counts(minute - 3600, a)

        # Then a minute counts when it starts at or after `since`, and `queue` keeps
        # only that queue
        assert [r.queue for r in from_start] == [a, b]
        assert after_start == []
        assert [(r.minute, r.queue, r.processed) for r in only_a] == [(minute, a, 1)]
        assert await backend.minute_counts(0.0, _queue("none")) == []

    @async_test
    async def test_minutes_come_in_order_of_minute_then_queue(self, backend: Backend) -> None:
        # Given runs finished in queues named out of creation order
        names = [_queue("c"), _queue("a"), _queue("b")]
        for name in names:
            await backend.enqueue([make_job(name)])
            (job,) = await backend.claim([name], "worker-1", 1, 60.0)
            await backend.finish([(job, Outcome.succeeded())])

        # When every minute kept is read
        rows = await backend.minute_counts(0.0)

        # Then they come oldest first, queues by name within a minute
        keys = [(r.minute, r.queue) for r in rows]
        assert keys == sorted(keys)
        assert len(keys) == len(set(keys))
        assert sorted(r.queue for r in rows if r.queue in names) == sorted(names)

    @pytest.mark.slow
    @async_test
    async def test_minutes_come_oldest_first(self, backend: Backend) -> None:
        """Waits for the next minute of the store's clock (up to a minute)."""
        # Given a run finished in one minute and two in the next
        q = _queue()
        await backend.enqueue([make_job(q) for _ in range(3)])
        (first,) = await backend.claim([q], "worker-1", 1, 60.0)
        await backend.finish([(first, Outcome.succeeded())])
        (earlier,) = [r.minute for r in await backend.minute_counts(0.0, q)]
        await asyncio.sleep(max(earlier + 60.05 - await backend.now(), 0.0))
        later = await backend.claim([q], "worker-1", 2, 60.0)
        await backend.finish([(job, Outcome.poisoned(error("x"))) for job in later])

        # When the queue's minutes are read, all of them and from the second one
        rows = await backend.minute_counts(0.0, q)
        second = await backend.minute_counts(earlier + 60, q)

        # Then each minute has its own runs, the older first
        assert [(r.minute, r.processed, r.failed) for r in rows] == [
            (earlier, 1, 0),
            (earlier + 60, 2, 2),
        ]
        assert second == rows[1:]

    @async_test
    async def test_sample_depth_records_the_jobs_waiting_in_each_queue(
        self, backend: Backend
    ) -> None:
        # Given a queue with four queued jobs, one running and one scheduled for later,
        # and an empty queue
        busy, idle = _queue("busy"), _queue("idle")
        await backend.enqueue([make_job(busy) for _ in range(5)])
        await backend.enqueue([make_job(busy, run_at=await backend.now() + 3600)])
        await claim_one(backend, busy)
        await backend.create_queue(idle)
        start = await backend.now()

        # When the depth is sampled
        await backend.sample_depth()

        # Then this minute has each queue's queued jobs, and no runs
        rows = await _counts(backend, _minute(start) - 60, busy, idle)
        assert [(r.queue, r.processed, r.failed, r.depth) for r in rows] == [
            (busy, 0, 0, 4),
            (idle, 0, 0, 0),
        ]

    @async_test
    async def test_counts_older_than_keep_counts_go(self, backend: Backend) -> None:
        # Given a run counted in its minute
        q = _queue()
        await backend.enqueue([make_job(q)])
        (job,) = await backend.claim([q], "worker-1", 1, 60.0)
        await backend.finish([(job, Outcome.succeeded())])
        assert _totals(await backend.minute_counts(0.0, q)) == {q: (1, 0)}

        # When the counts are kept no time at all, and the depth is sampled (which
        # sweeps old minutes on stores that do not expire them on their own)
        backend.keep_counts = 0.0
        await backend.sample_depth()

        # Then the queue's minutes are gone
        assert await backend.minute_counts(0.0, q) == []
