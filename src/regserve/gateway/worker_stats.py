"""Worker-side figures for ``/metrics``: batch sizes, queue depth, whether a worker answers,
and which versions are idle (their workers stopped until their next request; not pinged).

They live in the worker processes. Rather than adding anything to the scoring path, the
gateway pings every served worker when Prometheus scrapes (the PONG carries the batcher's
counters, see ``worker/server.py``) and exposes what came back. A worker that does not answer
within a second counts as down for that scrape.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from typing import Any, Protocol, runtime_checkable

from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

from regserve.router import Router

__all__ = ["BATCH_SIZE_BUCKETS", "WorkerStats"]

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
        targets: list[tuple[tuple[str, str], _Pingable]] = []
        idle: dict[tuple[str, str], bool] = {}
        for routes in self._router.all():
            for served in routes.versions.values():
                key, target = (routes.name, served.version), served.target
                if isinstance(target, _Idling):
                    idle[key] = target.idle
                if isinstance(target, _Pingable) and not idle.get(key):
                    targets.append((key, target))
        self._idle = idle
        answers = await asyncio.gather(*(_ask(target) for _, target in targets))
        self._stats = {key: answer for (key, _), answer in zip(targets, answers, strict=True)}

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
            "its next request loads it again (local backend), else 0.",
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
