"""Traffic figures: Prometheus series and per-minute aggregates for get-metric-history."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram

__all__ = ["TrafficRecorder"]

_MAX_SAMPLES = 4096  # latency samples kept per minute bucket for the percentiles


@dataclass
class _Bucket:
    requests: int = 0
    errors: int = 0
    latencies_ms: list[float] = field(default_factory=list)


class TrafficRecorder:
    """Counts scoring requests per model, version and status."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self._requests = Counter(
            "regserve_requests",
            "Scoring requests answered, by model, version and HTTP status.",
            ["model", "version", "status"],
            registry=self.registry,
        )
        self._latency = Histogram(
            "regserve_request_latency_seconds",
            "Scoring latency seen by the gateway, by model and version.",
            ["model", "version"],
            registry=self.registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
        )
        self._buckets: dict[tuple[str, str, int], _Bucket] = {}
        self._lock = threading.Lock()
        # Prometheus' labels() lookup is slow for the hot path: the children are kept here.
        self._series: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    def observe(self, model: str, version: str, status: int, seconds: float) -> None:
        series = self._series.get((model, version, status))
        if series is None:
            series = self._series[(model, version, status)] = (
                self._requests.labels(model, version, str(status)),
                self._latency.labels(model, version),
            )
        series[0].inc()
        series[1].observe(seconds)
        minute = int(time.time() // 60) * 60_000
        with self._lock:
            bucket = self._buckets.get((model, version, minute))
            if bucket is None:
                bucket = self._buckets[(model, version, minute)] = _Bucket()
            bucket.requests += 1
            bucket.errors += status >= 400
            if len(bucket.latencies_ms) < _MAX_SAMPLES:
                bucket.latencies_ms.append(seconds * 1000)

    def drain(self) -> list[dict[str, Any]]:
        """Per-minute rows gathered since the last drain, for the store."""
        with self._lock:
            buckets, self._buckets = self._buckets, {}
        return [
            {
                "model_name": model,
                "version": version,
                "minute": minute,
                "requests": b.requests,
                "errors": b.errors,
                "latency_p50_ms": _percentile(b.latencies_ms, 0.50),
                "latency_p99_ms": _percentile(b.latencies_ms, 0.99),
            }
            for (model, version, minute), b in buckets.items()
        ]


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 3)
