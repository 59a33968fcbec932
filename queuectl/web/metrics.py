"""``/metrics``: the queue in Prometheus' text format, read from the live ticker's frame.

A collector of its own registry (never the global one): a scrape reads no database, it
formats the latest reading (jobs per state, pools) and the recent attempt history that the
charts show (attempts finished in the last hour by outcome; runtime percentiles of the
completed attempts among the newest). Those two are gauges, not counters: counting every
attempt ever would read the whole history (a second at a million attempts), and pruned jobs
take their attempts with them. A reading older than two intervals (nobody looked: the
ticker slept) is taken again first; while the queue cannot be read, /metrics answers 503 with
the reason rather than the last numbers; ``queuectl_last_read_timestamp_seconds`` says when
the values were read.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeHistogramMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from queuectl.model import Outcome, State
from queuectl.web.charts import percentile
from queuectl.web.live import HISTORY_NEWEST, RUNTIME_BOUNDS, Ticker


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
        yield GaugeMetricFamily(
            "queuectl_last_read_timestamp_seconds",
            "When the queue was read for these values (Unix time).",
            value=frame.snapshot.now.timestamp(),
        )
        history = frame.history
        if history is None:
            return
        finished = GaugeMetricFamily(
            "queuectl_attempts_last_hour",
            "Attempts that finished in the last hour, by outcome (of those started in the "
            "last 24 hours).",
            labels=["outcome"],
        )
        for outcome in Outcome:
            finished.add_metric([outcome.value], history.by_outcome.get(outcome.value, 0))
        yield finished
        runtimes = GaugeMetricFamily(
            "queuectl_attempt_runtime_seconds",
            f"Runtime percentiles of the completed attempts among the newest "
            f"{HISTORY_NEWEST:,} (interpolated within the dashboard's histogram buckets).",
            labels=["quantile"],
        )
        for q in (0.5, 0.95):
            value = percentile(history.runtimes, RUNTIME_BOUNDS, q)
            if value is not None:
                runtimes.add_metric([repr(q)], value)
        yield runtimes
        yield GaugeMetricFamily(
            "queuectl_attempt_runtime_sampled",
            "How many completed attempts the runtime percentiles are of.",
            value=sum(history.runtimes),
        )
        # A gauge histogram (OpenMetrics): the buckets of a sliding sample, which may shrink.
        cumulative, buckets = 0, []
        for bound, count in zip([*RUNTIME_BOUNDS, float("inf")], history.runtimes, strict=True):
            cumulative += count
            buckets.append(("+Inf" if bound == float("inf") else repr(float(bound)), cumulative))
        yield GaugeHistogramMetricFamily(
            "queuectl_recent_attempt_runtime_seconds",
            f"Runtimes of the completed attempts among the newest {HISTORY_NEWEST:,}.",
            buckets=buckets,
            gsum_value=history.runtime_sum,
        )


def endpoint(ticker: Ticker) -> object:
    """The ``/metrics`` endpoint."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(QueueCollector(ticker))

    async def metrics(request: Request) -> Response:
        await run_in_threadpool(ticker.current)  # a fresh reading (QueuectlError: none)
        error = ticker.error
        if error is not None:  # the last reading failed: no stale numbers as if they were new
            return PlainTextResponse(f"the queue cannot be read: {error}\n", 503)
        body = await run_in_threadpool(generate_latest, registry)
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    return metrics
