"""regserve's figures: Prometheus series (``/metrics``) and per-minute aggregates.

:class:`TrafficRecorder` counts scoring requests (Prometheus, and the per-minute rows that feed
``get-metric-history``); :class:`ControlMetrics` holds what the controller and the webhook
route report (restarts, environment builds, registry sync, versions unloaded) and the local
backend's memory measurements (:meth:`ControlMetrics.watch_memory`). Both write into the recorder's
one :class:`CollectorRegistry`; worker-side figures (batch sizes, queue depth) are read at
scrape time by ``gateway/worker_stats.py``. docs/monitoring.md describes every series.

The per-minute rows also hold each version's queue depth at the gateway (the most requests
sent to its workers and not answered yet, at once: :meth:`TrafficRecorder.opened`) and the
batches its workers ran (fed by ``gateway/worker_stats.py``'s :class:`BatchTally`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

__all__ = ["CaptureMetrics", "ControlMetrics", "TrafficRecorder", "ref_label"]

_MAX_SAMPLES = 4096  # latency samples kept per minute bucket for the percentiles
_UNLOAD_REASONS = {"VERSION_IDLE": "idle_timeout", "VERSION_EVICTED": "memory_budget"}


class MemoryFigures(Protocol):
    """A measurement of the workers' memory (the local backend's ``MemoryReading``)."""

    @property
    def loaded_bytes(self) -> int: ...
    @property
    def warm_bytes(self) -> int: ...
    @property
    def loaded_versions(self) -> int: ...


@dataclass
class _Bucket:
    requests: int = 0
    errors: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    batches: int | None = None
    batched_requests: int | None = None
    batch_size_max: int | None = None
    queue_depth_max: int | None = None


def ref_label(ref: str) -> str:
    """The ``ref`` label of a scoring URL's ref: stages and ``latest`` in one spelling,
    ``@alias`` as ``alias``, version numbers without leading zeros."""
    if ref.isascii() and ref.isdigit():
        return ref.lstrip("0") or "0"  # int() refuses more than 4,300 digits
    lowered = ref.lower()
    if lowered in _CANONICAL_REFS:
        return _CANONICAL_REFS[lowered]
    return ref.removeprefix("@")


_CANONICAL_REFS = {"staging": "Staging", "production": "Production", "latest": "latest"}


class TrafficRecorder:
    """Counts scoring requests per model, version, ref and status.

    ``ref`` is the URL's ref once it resolved to a version, in one spelling (``-`` otherwise,
    so that made-up refs never become series, nor keys of the cache of series); the caller
    passes ``-`` as ``model`` for a model that is not served.
    """

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self._requests = Counter(
            "regserve_requests",
            "Scoring requests answered, by model, version, ref (as in the URL) and HTTP status.",
            ["model", "version", "ref", "status"],
            registry=self.registry,
        )
        self._latency = Histogram(
            "regserve_request_latency_seconds",
            "Scoring latency seen by the gateway, by model and version.",
            ["model", "version"],
            registry=self.registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
        )
        self._split = Counter(
            "regserve_split_requests",
            "Requests to a model's split URL (/model/{name}/invocations), by model, the route "
            "of its traffic config drawn (its ref), the version that answered and HTTP status.",
            ["model", "route", "version", "status"],
            registry=self.registry,
        )
        self._shadow = Counter(
            "regserve_shadow_requests",
            "Mirrored copies of split-URL requests sent to the traffic config's shadow ref, by "
            "model, version and outcome (the HTTP status of its answer, never returned to the "
            "caller; 'failed': no answer; 'dropped': too many copies in flight).",
            ["model", "version", "outcome"],
            registry=self.registry,
        )
        self._buckets: dict[tuple[str, str, int], _Bucket] = {}
        self._open: dict[tuple[str, str], int] = {}
        self._lock = threading.Lock()
        # Prometheus' labels() lookup is slow for the hot path: the children are kept here.
        self._series: dict[tuple[str, str, str, int], tuple[Any, Any]] = {}
        self._split_series: dict[tuple[str, str, str, int], Any] = {}

    def observe(self, model: str, version: str, ref: str, status: int, seconds: float) -> None:
        label = ref_label(ref) if version != "-" else "-"
        key = (model, version, label, status)
        series = self._series.get(key)
        if series is None:
            series = self._series[key] = (
                self._requests.labels(model, version, label, str(status)),
                self._latency.labels(model, version),
            )
        series[0].inc()
        series[1].observe(seconds)
        with self._lock:
            bucket = self._bucket(model, version)
            bucket.requests += 1
            bucket.errors += status >= 400
            if len(bucket.latencies_ms) < _MAX_SAMPLES:
                bucket.latencies_ms.append(seconds * 1000)

    def opened(self, model: str, version: str) -> None:
        """A request was sent to the version's worker (its answer is awaited): the minute's
        queue depth is the most requests of the version open at once."""
        key = (model, version)
        with self._lock:
            depth = self._open[key] = self._open.get(key, 0) + 1
            self._note_depth(model, version, depth)

    def closed(self, model: str, version: str) -> None:
        """The request :meth:`opened` for the version was answered (or failed)."""
        key = (model, version)
        with self._lock:
            depth = self._open.get(key, 1)
            # noted again: requests open across a minute's turn count in the new minute too
            self._note_depth(model, version, depth)
            if depth <= 1:
                self._open.pop(key, None)
            else:
                self._open[key] = depth - 1

    def add_batches(
        self, model: str, version: str, batches: int, requests: int, largest: int
    ) -> None:
        """Batches the version's workers ran since the last call (``requests`` in them, the
        largest of ``largest``), counted in the current minute."""
        if batches <= 0:
            return
        with self._lock:
            bucket = self._bucket(model, version)
            bucket.batches = (bucket.batches or 0) + batches
            bucket.batched_requests = (bucket.batched_requests or 0) + requests
            bucket.batch_size_max = max(bucket.batch_size_max or 0, largest)

    def _note_depth(self, model: str, version: str, depth: int) -> None:
        bucket = self._bucket(model, version)
        bucket.queue_depth_max = max(bucket.queue_depth_max or 0, depth)

    def _bucket(self, model: str, version: str) -> _Bucket:
        """The current minute's bucket of the version (call with the lock held)."""
        key = (model, version, int(time.time() // 60) * 60_000)
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = _Bucket()
        return bucket

    def observe_split(self, model: str, route: str, version: str, status: int) -> None:
        """Count a split-URL request answered by ``version`` through the route ``route``
        (a ref of the model's traffic config, or of the default)."""
        key = (model, route, version, status)
        series = self._split_series.get(key)
        if series is None:
            series = self._split_series[key] = self._split.labels(
                model, route, version, str(status)
            )
        series.inc()

    def observe_shadow(self, model: str, version: str, outcome: str) -> None:
        """Count a mirrored copy of a request (off the hot path)."""
        self._shadow.labels(model, version, outcome).inc()

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
                "batches": b.batches,
                "batched_requests": b.batched_requests,
                "batch_size_max": b.batch_size_max,
                "queue_depth_max": b.queue_depth_max,
            }
            for (model, version, minute), b in buckets.items()
        ]


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 3)


class ControlMetrics:
    """What the control plane reports: worker restarts, environment builds, registry sync.

    Called from the event loop (controller, webhook route); the scrape reads the gauges.
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        self._started = time.time()
        self._last_sync = self._started
        self._seen: dict[tuple[str, str], float] = {}
        self.worker_crashes = Counter(
            "regserve_worker_crashes",
            "Worker processes that exited unexpectedly, by model and version.",
            ["model", "version"],
            registry=registry,
        )
        self.worker_restarts = Counter(
            "regserve_worker_restarts",
            "Workers restarted after a crash that serve again, by model and version.",
            ["model", "version"],
            registry=registry,
        )
        self.env_build = Histogram(
            "regserve_environment_build_seconds",
            "Time to build a model's virtualenv (reused environments are not observed).",
            registry=registry,
            buckets=(1, 2.5, 5, 10, 20, 30, 60, 120, 300, 600, 1200),
        )
        self.environments = Counter(
            "regserve_environments",
            "Environments prepared for versions, by outcome (built or reused).",
            ["outcome"],
            registry=registry,
        )
        self.version_ready = Histogram(
            "regserve_version_ready_seconds",
            "From a version's registration in the registry to serving READY (versions "
            "registered while this process runs).",
            registry=registry,
            buckets=(1, 2, 3, 5, 7.5, 10, 15, 20, 30, 60, 120, 300, 600),
        )
        self.syncs = Counter(
            "regserve_registry_syncs",
            "Registry sync passes, by outcome (ok, or unavailable when it could not be read).",
            ["outcome"],
            registry=registry,
        )
        sync_age = Gauge(
            "regserve_registry_sync_age_seconds",
            "Seconds since the last registry sync pass that read the registry successfully.",
            registry=registry,
        )
        sync_age.set_function(lambda: time.time() - self._last_sync)
        self.webhooks = Counter(
            "regserve_registry_webhooks",
            "Registry webhook deliveries received, by result (accepted, or why refused).",
            ["result"],
            registry=registry,
        )
        self.unloads = Counter(
            "regserve_version_unloads",
            "Versions whose workers were stopped while they stay READY (their next request "
            "loads them again), by reason: idle_timeout or memory_budget.",
            ["reason"],
            registry=registry,
        )
        for reason in _UNLOAD_REASONS.values():
            self.unloads.labels(reason)
        self._registry = registry

    def watch_memory(
        self, reading: Callable[[], MemoryFigures | None], budget_bytes: int | None
    ) -> None:
        """Export the workers' memory as ``reading`` last measured it, and the budget."""

        def figure(name: str) -> Callable[[], float]:
            return lambda: float(getattr(reading(), name, 0) or 0)

        for name, key, text in (
            (
                "regserve_loaded_memory_bytes",
                "loaded_bytes",
                "PSS of the served versions' worker processes (replicas, templates, shared "
                "workers): what REGSERVE_MEMORY_BUDGET bounds; measured every few seconds.",
            ),
            (
                "regserve_warm_memory_bytes",
                "warm_bytes",
                "PSS of the models' warm processes (outside the memory budget).",
            ),
            (
                "regserve_loaded_versions",
                "loaded_versions",
                "Served versions whose workers are loaded (not idle).",
            ),
        ):
            Gauge(name, text, registry=self._registry).set_function(figure(key))
        if budget_bytes is not None:
            Gauge(
                "regserve_memory_budget_bytes",
                "REGSERVE_MEMORY_BUDGET: above it the least recently used versions are unloaded.",
                registry=self._registry,
            ).set(budget_bytes)

    def synced(self, ok: bool) -> None:
        """A sync pass finished; ``ok`` when every model's registry read succeeded."""
        self.syncs.labels("ok" if ok else "unavailable").inc()
        if ok:
            self._last_sync = time.time()

    def version_registered(self, model: str, version: str, created_ms: int) -> None:
        """The controller began deploying a version the registry created at ``created_ms``."""
        created = created_ms / 1000
        if created >= self._started - 1:  # older versions measure regserve's restart instead
            self._seen[(model, version)] = created

    def version_serving(self, model: str, version: str) -> None:
        created = self._seen.pop((model, version), None)
        if created is not None:
            self.version_ready.observe(max(0.0, time.time() - created))

    def worker_event(self, model: str, version: str, event_type: str) -> None:
        if event_type == "WORKER_CRASHED":
            self.worker_crashes.labels(model, version).inc()
        elif event_type == "WORKER_RESTARTED":
            self.worker_restarts.labels(model, version).inc()
        elif event_type in _UNLOAD_REASONS:
            self.unloads.labels(_UNLOAD_REASONS[event_type]).inc()

    def environment(self, reused: bool, seconds: float) -> None:
        self.environments.labels("reused" if reused else "built").inc()
        if not reused:
            self.env_build.observe(seconds)


class CaptureMetrics:
    """What becomes of the rows captured into inference tables (``regserve.inference``):
    written, dropped (the writer's queue was full) or failed (the write failed). Called from
    the event loop and the writer's thread (Prometheus' counters are thread-safe)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._rows = Counter(
            "regserve_inference_table_rows",
            "Scoring requests captured for a model's inference table, by model and outcome "
            "(written; dropped: the writer's queue was full; failed: the write failed).",
            ["model", "outcome"],
            registry=registry,
        )
        self._queued = Gauge(
            "regserve_inference_table_queue_rows",
            "Captured rows waiting for the inference table's writer.",
            registry=registry,
        )

    def watch_queue(self, size: Callable[[], int]) -> None:
        self._queued.set_function(size)

    def written(self, model: str, rows: int) -> None:
        self._rows.labels(model, "written").inc(rows)

    def dropped(self, model: str) -> None:
        self._rows.labels(model, "dropped").inc()

    def failed(self, model: str, rows: int) -> None:
        self._rows.labels(model, "failed").inc(rows)
