"""Prometheus metrics for one pipeline, read from its status snapshot at scrape time.

Each pipeline gets its own ``CollectorRegistry`` (never the global default one), so tests and
several stations in one process do not collide, and the hot path updates nothing: the
collector turns :class:`~vinspect.pipeline.status.PipelineStatus` into metric families when
scraped. ``serve_metrics`` starts the HTTP exporter on 127.0.0.1 unless told otherwise.
prometheus-client (the ``[line]`` extra) is imported lazily.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from vinspect.pipeline.status import PipelineStatus
from vinspect.types import StationState

__all__ = ["make_registry", "serve_metrics"]


def _families(status: PipelineStatus) -> Iterator[Any]:
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

    b, station = status.books, status.station_id
    parts = CounterMetricFamily("vinspect_parts", "Parts by disposition", labels=["station", "disposition"])
    for key, value in (
        ("pass", b.passed),
        ("review", b.review),
        ("defect", b.failed_defect),
        *sorted(b.failed_fault.items()),
    ):
        parts.add_metric([station, key], value)
    yield parts
    yield CounterMetricFamily("vinspect_triggers", "Parts that entered the station", value=b.triggers)
    yield GaugeMetricFamily("vinspect_books_discrepancy", "Triggers without a disposition yet", value=b.discrepancy)
    state = GaugeMetricFamily("vinspect_station_state", "1 for the current state", labels=["station", "state"])
    for s in StationState:
        state.add_metric([station, str(s)], 1.0 if s is status.state else 0.0)
    yield state
    lat = GaugeMetricFamily(
        "vinspect_latency_ms", "Acquired-to-signalled latency over the recent window", labels=["station", "quantile"]
    )
    for q in ("p50_ms", "p99_ms", "max_ms"):
        lat.add_metric([station, q.removesuffix("_ms")], status.latency_ms.get(q, 0.0))
    yield lat
    sinks = CounterMetricFamily("vinspect_sink_errors", "Failed sink writes", labels=["station", "sink"])
    errors = status.extras.get("sink_errors")
    for name, count in errors.items() if isinstance(errors, dict) else ():
        sinks.add_metric([station, str(name)], float(count))
    yield sinks
    for key in ("signal_errors", "record_dropped", "alarms", "swaps", "swaps_refused"):
        extra = status.extras.get(key, 0)
        yield CounterMetricFamily(
            f"vinspect_{key}", key.replace("_", " "), value=float(extra) if isinstance(extra, int | float) else 0.0
        )
    yield GaugeMetricFamily("vinspect_queue_depth", "Frames waiting for inspection", value=status.queue_depth)


class _StatusCollector:
    def __init__(self, snapshot: Callable[[], PipelineStatus]) -> None:
        self._snapshot = snapshot

    def collect(self) -> Iterator[Any]:
        yield from _families(self._snapshot())


def make_registry(snapshot: Callable[[], PipelineStatus]) -> Any:
    """A fresh ``CollectorRegistry`` exposing the pipeline's status (e.g. ``pipeline.status``)."""
    from prometheus_client import CollectorRegistry

    registry = CollectorRegistry(auto_describe=False)
    registry.register(_StatusCollector(snapshot))
    return registry


def serve_metrics(registry: Any, *, port: int, host: str = "127.0.0.1") -> Any:
    """Start the exporter thread; returns the HTTP server (call ``shutdown()`` to stop it)."""
    from prometheus_client import start_http_server

    server, _thread = start_http_server(port, addr=host, registry=registry)
    return server
