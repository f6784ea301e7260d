"""``GET /metrics``: Prometheus text of the API's counters and the store's figures.

Each API process has its own registry (not the global one), so that several
apps in one process — the tests do that — do not clash. The store's figures are
read at scrape time: they are the same whichever API process answers.
"""

from __future__ import annotations

from collections.abc import Sequence

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from conveyor.backends.base import QueueInfo, Stats


class _StoreFigures(Collector):
    """Yields the figures last read from the store."""

    def __init__(self) -> None:
        self.queues: Sequence[QueueInfo] = ()
        self.stats: Stats | None = None

    def collect(self) -> list[Metric]:
        jobs = GaugeMetricFamily(
            "conveyor_jobs", "Jobs in the store by queue and state.", labels=["queue", "state"]
        )
        paused = GaugeMetricFamily(
            "conveyor_queue_paused", "1 when the queue is paused.", labels=["queue"]
        )
        for queue in self.queues:
            paused.add_metric([queue.name], 1.0 if queue.paused else 0.0)
            for state, count in queue.counts.items():
                jobs.add_metric([queue.name, state], float(count))
        families: list[Metric] = [jobs, paused]
        if self.stats is not None:
            families.append(
                CounterMetricFamily(
                    "conveyor_jobs_processed", "Runs finished.", value=self.stats.processed
                )
            )
            families.append(
                CounterMetricFamily(
                    "conveyor_jobs_failed", "Runs that failed.", value=self.stats.failed
                )
            )
        return families


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.submitted = Counter(
            "conveyor_api_jobs_submitted", "Jobs accepted by POST /v1/jobs.", registry=self.registry
        )
        self.polls = Counter(
            "conveyor_api_polls",
            "Answers of GET /v1/jobs/{id} by status.",
            ["status"],
            registry=self.registry,
        )
        self._store = _StoreFigures()
        self.registry.register(self._store)

    def render(self, queues: Sequence[QueueInfo], stats: Stats) -> tuple[bytes, str]:
        self._store.queues = queues
        self._store.stats = stats
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
