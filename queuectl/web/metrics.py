"""``/metrics``: the queue in Prometheus' text format, read from the live ticker's frame.

A collector of its own registry (never the global one): a scrape reads no database, it
formats the latest reading (jobs per state, pools) and attempt history (attempts by outcome,
the runtime histogram).
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from queuectl.model import Outcome, State
from queuectl.web.live import RUNTIME_BOUNDS, Ticker


class QueueCollector(Collector):
    """The metrics of one queue, from ``ticker``'s latest frame."""

    def __init__(self, ticker: Ticker) -> None:
        self.ticker = ticker

    def collect(self) -> Iterator[Metric]:
        frame = self.ticker.current()
        status = frame.snapshot.status
        jobs = GaugeMetricFamily("queuectl_jobs", "Jobs in each state.", labels=["state"])
        for state in State:
            jobs.add_metric([state.value], status.counts.get(state, 0))
        yield jobs
        live = [w for w in status.workers if not w.stop_requested]
        yield GaugeMetricFamily("queuectl_workers", "Live worker pools.", value=len(live))
        yield GaugeMetricFamily(
            "queuectl_worker_threads",
            "Threads of the live worker pools.",
            value=sum(w.threads for w in live),
        )
        yield GaugeMetricFamily("queuectl_paused", "1 while the queue is paused.", status.paused)
        history = frame.history
        if history is None:
            return
        attempts = CounterMetricFamily(
            "queuectl_attempts", "Finished attempts by outcome.", labels=["outcome"]
        )
        for outcome in Outcome:
            attempts.add_metric([outcome.value], history.by_outcome.get(outcome.value, 0))
        yield attempts
        cumulative, buckets = 0, []
        for bound, n in zip([*RUNTIME_BOUNDS, float("inf")], history.runtimes, strict=True):
            cumulative += n
            buckets.append(("+Inf" if bound == float("inf") else repr(bound), cumulative))
        yield HistogramMetricFamily(
            "queuectl_attempt_runtime_seconds",
            "Runtimes of completed attempts.",
            buckets=buckets,
            sum_value=history.runtime_sum,
        )


def endpoint(ticker: Ticker) -> object:
    """The ``/metrics`` endpoint."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(QueueCollector(ticker))

    async def metrics(request: Request) -> Response:
        body = await run_in_threadpool(generate_latest, registry)
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    return metrics
