"""The warm processes of the local backend: one per (model, environment) that has versions served
with forked templates (:mod:`.warm`).

- **Started** with the first such version of the model in that environment (its template is
  then forked from it as soon as it is up, instead of importing everything a second time
  beside it), so that later versions, templates lost with their standby and scale-ups cost a
  model load. ``REGSERVE_WARM_START=0``, or forking off for the model
  (``regserve.fork_replicas=false``), start none.
- **Kept** while a version of that model runs in that environment; **stopped** when the last
  one is removed, when serving is disabled, or when the model's sandbox changed (its env file,
  its network: a template forked from it would inherit the old one).
- Let go of, running, when regserve restarts keeping its workers; the next process adopts it
  by its record.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from pathlib import Path

from regserve.backends.base import VersionSpec
from regserve.backends.local.preload import preload_modules
from regserve.backends.local.warm import Report, WarmProcess, WarmSpec
from regserve.sandbox import Sandbox
from regserve.settings import Settings

__all__ = ["WarmPool"]

Place = Callable[[str, int], None]
"""Put a process of the model under the cluster's current limits (``ResourceLimits.place``)."""
Teller = Callable[[str, str], Report]
"""(model, interpreter) -> where the warm process's events go."""


class WarmPool:
    """The warm processes of every served model, by (model, interpreter)."""

    def __init__(self, settings: Settings, place: Place | None, tell: Teller) -> None:
        self._settings = settings
        self._place = place
        self._tell = tell
        self._warm: dict[tuple[str, str], tuple[WarmProcess, Sandbox]] = {}
        self._stopping: set[asyncio.Task[None]] = set()
        """Warm processes replaced (their model's sandbox changed), being stopped."""

    def for_version(self, spec: VersionSpec, sandbox: Sandbox) -> WarmProcess | None:
        """The warm process this version's template is forked from, started if need be (None:
        warm starts are off)."""
        if not self._settings.warm_start or spec.python is None:
            return None
        key = (spec.model_name, str(spec.python))
        known = self._warm.get(key)
        if known is not None and known[1] == sandbox:
            known[0].place()  # under the cluster's current limits (a cluster update moves them)
            return known[0]
        if known is not None:  # the sandbox changed: its templates would inherit the old one
            self._stop_later(known[0])
        warm = self._new(spec, sandbox)
        self._warm[key] = (warm, sandbox)
        warm.start()
        return warm

    def prewarm(self, spec: WarmSpec, sandbox: Sandbox) -> None:
        """Start the model's warm process for ``spec.python`` before its first version is
        deployed (that version's :meth:`for_version` then finds it, when its sandbox is the
        same, and puts it under the cluster's limits)."""
        key = (spec.model_name, str(spec.python))
        if self._settings.warm_start and key not in self._warm:
            warm = self._process(spec, sandbox)
            self._warm[key] = (warm, sandbox)
            warm.start()

    def _new(self, spec: VersionSpec, sandbox: Sandbox) -> WarmProcess:
        assert spec.python is not None
        warm_spec = WarmSpec(
            spec.model_name,
            spec.python,
            spec.worker_path,
            spec.env_key,
            tuple(preload_modules(spec.model_path)),
        )
        return self._process(warm_spec, sandbox)

    def _process(self, spec: WarmSpec, sandbox: Sandbox) -> WarmProcess:
        place = self._place
        placer = (lambda pid: place(spec.model_name, pid)) if place is not None else None
        report = self._tell(spec.model_name, str(spec.python))
        return WarmProcess(self._settings, spec, sandbox, placer, report)

    def get(self, model_name: str, python: Path | None) -> WarmProcess | None:
        known = self._warm.get((model_name, str(python)))
        return known[0] if known is not None else None

    def pids(self) -> list[int]:
        """Every running warm process's pid."""
        return [pid for warm, _ in self._warm.values() if (pid := warm.pid) is not None]

    async def release(self, model_name: str, in_use: Iterable[str]) -> None:
        """Stop the model's warm processes whose interpreter no version in ``in_use`` runs."""
        used = set(in_use)
        gone = [k for k in self._warm if k[0] == model_name and k[1] not in used]
        await asyncio.gather(*(self._warm.pop(key)[0].stop() for key in gone))

    async def stop_all(self) -> None:
        warm = [w for w, _ in self._warm.values()]
        self._warm.clear()
        await asyncio.gather(*(w.stop() for w in warm), *self._stopping)

    def abandon_all(self) -> None:
        """Let every one go, running, for the next regserve process to adopt."""
        for warm, _ in self._warm.values():
            warm.abandon()
        self._warm.clear()

    def _stop_later(self, warm: WarmProcess) -> None:
        task = asyncio.create_task(warm.stop(), name=f"stop {warm.label}")
        self._stopping.add(task)
        task.add_done_callback(self._stopping.discard)
