"""Worker-side figures for ``/metrics``: batch sizes, queue depth, whether a worker answers,
and which versions are idle (their workers stopped until their next request; not pinged).

They live in the worker processes. Rather than adding anything to the scoring path, the
gateway pings every served worker when Prometheus scrapes (the PONG carries the batcher's
counters, see ``worker/server.py``) and exposes what came back. A worker that does not answer
within a second counts as down for that scrape.

:class:`BatchTally` pings the same way for ``get-metric-history``'s per-minute batch sizes:
at each metrics flush, the batches a worker ran since the previous one.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from typing import Any, Protocol, runtime_checkable

from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

from regserve.metrics import TrafficRecorder
from regserve.router import Router

__all__ = ["BATCH_SIZE_BUCKETS", "BatchTally", "WorkerStats"]

BATCH_SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
_PING_TIMEOUT = 1.0


@runtime_checkable
class _Pingable(Protocol):
    async def ping(self, timeout: float = ...) -> dict[str, Any]: ...


@runtime_checkable
class _Idling(Protocol):
    @property
    def idle(self) -> bool: ...


class WorkerStats(Collector):
    """A Prometheus collector fed by :meth:`refresh` (call it right before rendering)."""

    def __init__(self, router: Router, registry: CollectorRegistry) -> None:
        self._router = router
        self._stats: dict[tuple[str, str], dict[str, Any] | None] = {}
        self._idle: dict[tuple[str, str], bool] = {}
        registry.register(self)

    async def refresh(self) -> None:
        """Ping every served worker at once; keep what each one says (None: no answer)."""
        self._idle = _idle_of(self._router)
        self._stats = await _ping_all(self._router)

    def collect(self) -> Iterator[Any]:
        up = GaugeMetricFamily(
            "regserve_worker_up",
            "1 when the version's worker answered the scrape's ping, else 0.",
            labels=["model", "version"],
        )
        depth = GaugeMetricFamily(
            "regserve_queue_depth",
            "Requests inside the worker not answered yet (waiting for a batch or predicting).",
            labels=["model", "version"],
        )
        sizes = HistogramMetricFamily(
            "regserve_batch_size",
            "Requests per predict batch in the worker (1 for unbatched models); counted since "
            "the worker started.",
            labels=["model", "version"],
        )
        idle = GaugeMetricFamily(
            "regserve_version_idle",
            "1 when the version is idle: its workers were stopped after its idle timeout and "
            "its next request loads it again (on Ray: scaled to zero replicas), else 0.",
            labels=["model", "version"],
        )
        for (model, version), is_idle in sorted(self._idle.items()):
            idle.add_metric([model, version], 1 if is_idle else 0)
        for (model, version), stats in sorted(self._stats.items()):
            up.add_metric([model, version], 0 if stats is None else 1)
            batching = (stats or {}).get("batching")
            if not isinstance(batching, dict):
                continue
            depth.add_metric(
                [model, version], int(batching.get("queued", 0)) + int(batching.get("in_flight", 0))
            )
            buckets, total = _buckets(batching.get("batch_sizes") or {})
            sizes.add_metric([model, version], buckets, total)
        yield from (up, depth, sizes, idle)


class BatchTally:
    """Feeds the recorder's per-minute rows with the batches each served version's worker ran.

    A worker counts its batches by size since it started (``batch_sizes`` in its PONG);
    :meth:`sample` pings the workers and adds what grew since the previous sample to the
    current minute. A worker seen for the first time (or a new pid: restarted) counts from its
    start, so a worker adopted after a regserve restart puts its earlier batches into the first
    minute: its mean and largest batch, not a wrong one. With several replicas, the one that
    answers the ping is counted (as for ``/metrics``).
    """

    def __init__(self, router: Router, recorder: TrafficRecorder) -> None:
        self._router = router
        self._recorder = recorder
        self._seen: dict[tuple[str, str], tuple[int, dict[int, int]]] = {}
        self._lock = asyncio.Lock()  # two samples at once would count the same batches twice

    async def sample(self, model: str | None = None) -> None:
        """Count the batches run since the last sample (of ``model``'s versions only)."""
        async with self._lock:
            for (name, version), pong in (await _ping_all(self._router, model)).items():
                sizes = _sizes(pong)
                if sizes is None:
                    continue
                pid, counts = sizes
                before = self._seen.get((name, version))
                self._seen[(name, version)] = sizes
                ran = _grown(before[1] if before and before[0] == pid else {}, counts)
                if ran:
                    self._recorder.add_batches(
                        name,
                        version,
                        sum(ran.values()),
                        sum(size * n for size, n in ran.items()),
                        max(ran),
                    )


def _sizes(pong: dict[str, Any] | None) -> tuple[int, dict[int, int]] | None:
    """(the worker's pid, batches by size since it started), or None: not known."""
    batching = (pong or {}).get("batching")
    if pong is None or not isinstance(batching, dict):
        return None
    counts = batching.get("batch_sizes") or {}
    return int(pong.get("pid", 0)), {int(size): int(n) for size, n in counts.items()}


def _grown(before: dict[int, int], now: dict[int, int]) -> dict[int, int]:
    """Batches by size counted in ``now`` and not yet in ``before``."""
    if any(now.get(size, 0) < n for size, n in before.items()):
        before = {}  # counted afresh: a worker that started again under the same pid
    return {size: n - before.get(size, 0) for size, n in now.items() if n > before.get(size, 0)}


def _idle_of(router: Router) -> dict[tuple[str, str], bool]:
    """Whether each served version that can go idle is idle now."""
    idle: dict[tuple[str, str], bool] = {}
    for routes in router.all():
        for served in routes.versions.values():
            target = served.target
            if isinstance(target, _Idling):
                idle[(routes.name, served.version)] = target.idle
    return idle


async def _ping_all(router: Router, model: str | None = None) -> dict[tuple[str, str], Any]:
    """Every served version's (of ``model``, or all) PONG at once; None: no answer."""
    targets: list[tuple[tuple[str, str], _Pingable]] = []
    for routes in router.all():
        if model is not None and routes.name != model:
            continue
        for served in routes.versions.values():
            target = served.target
            if isinstance(target, _Idling) and target.idle:
                continue  # unloaded: nothing to ask, and a ping must not wake it
            if isinstance(target, _Pingable):
                targets.append(((routes.name, served.version), target))
    answers = await asyncio.gather(*(_ask(target) for _, target in targets))
    return {key: answer for (key, _), answer in zip(targets, answers, strict=True)}


async def _ask(target: _Pingable) -> dict[str, Any] | None:
    with contextlib.suppress(Exception):  # down, restarting, or too slow: reported as down
        return await target.ping(timeout=_PING_TIMEOUT)
    return None


def _buckets(counts: dict[str, int]) -> tuple[list[tuple[str, float]], float]:
    """Cumulative Prometheus buckets and the sum of sizes from ``{size: batches}``."""
    sizes = {int(size): int(n) for size, n in counts.items()}
    buckets = [
        (str(edge), float(sum(n for s, n in sizes.items() if s <= edge)))
        for edge in BATCH_SIZE_BUCKETS
    ]
    buckets.append(("+Inf", float(sum(sizes.values()))))
    return buckets, float(sum(size * n for size, n in sizes.items()))
