"""The one supervision loop of every local worker process: start it, wait until it serves,
watch it, and start it again when it dies.

A replica of a :class:`~regserve.backends.local.replicas.ReplicaSet`, a
:class:`~regserve.backends.local.shared.SharedWorker` and a
:class:`~regserve.backends.local.template.Template` are each a :class:`Supervisee`: how to
start one and what to say about it. :func:`supervise` is the behaviour they share:

- **death is seen at once**: a process is watched through a pidfd, whether regserve spawned
  it, adopted it from a previous process, or a template forked it;
- **the first restart after the process served is immediate**; the backoff
  (``REGSERVE_RESTART_BACKOFF_BASE``, doubling, at most ``REGSERVE_RESTART_BACKOFF_MAX``) starts
  with the second crash in a row;
- ``REGSERVE_MAX_RESTARTS`` crashes in a row without serving in between: the supervisee gives
  up (its version is FAILED, or its template is off);
- **a start may wait for its turn** (:meth:`Supervisee.turn`: a replica's, in the backend's
  start queue); its timeouts run from when the turn came.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from regserve.backends.local.process import ProcessHandle
from regserve.errors import RegServeError
from regserve.settings import Settings

__all__ = ["RestartPolicy", "Supervisee", "supervise", "wait_until_ready"]

_POLL = 0.05


@dataclass(frozen=True)
class RestartPolicy:
    max_restarts: int
    """Crashes in a row (without serving in between) before giving up."""
    backoff_base: float
    backoff_max: float

    @classmethod
    def of(cls, settings: Settings) -> RestartPolicy:
        return cls(
            settings.max_restarts, settings.restart_backoff_base, settings.restart_backoff_max
        )

    def delay(self, crashes: int) -> float:
        """Seconds before the restart that follows ``crashes`` crashes in a row: none after
        the first (a process that served and died comes back at once), then base, 2 x base..."""
        if crashes <= 1:
            return 0.0
        return float(min(self.backoff_base * 2 ** (crashes - 2), self.backoff_max))


class Supervisee(Protocol):
    """One supervised process: how it is started, and what is said about it."""

    def turn(self) -> AbstractAsyncContextManager[object]:
        """Held while it starts (launch, until it serves or failed): a turn of the backend's
        :class:`~regserve.backends.local.start_queue.StartQueue`, or nothing to wait for."""

    async def launch(self) -> ProcessHandle:
        """Start it (OSError or RegServeError: it cannot be started at all)."""

    async def wait_ready(self, process: ProcessHandle) -> bool:
        """Until it serves (True), or it exited or took too long (False; it is killed then)."""

    async def serving(self, process: ProcessHandle, restarted: bool) -> None:
        """It serves; ``restarted``: after a crash (else its first start)."""

    async def unready(self, process: ProcessHandle) -> bool:
        """It never served: True to count it as a crash and go on, False to stop here."""

    async def wait_exit(self, process: ProcessHandle) -> int:
        """Until it exits: its exit code."""

    async def explain(self, process: ProcessHandle, code: int) -> str:
        """Why it ended, in words ("Worker pid 12 was killed by SIGKILL")."""

    def charge(self, why: str) -> int | None:
        """Who pays for this death: None, the process (its crashes in a row count); else the
        crash count to back off by, the process's own count unchanged (a shared worker that
        died loading one version blames that version)."""

    def restarting(self, why: str, delay: float, crashes: int) -> None:
        """It is started again after ``delay`` seconds."""

    def give_up(self, why: str, crashes: int) -> None:
        """It crashed ``crashes`` times in a row: it is not started again."""

    def cannot_start(self, error: Exception) -> None:
        """:meth:`launch` failed: it is not started again."""

    async def stopped_while_starting(self, process: ProcessHandle) -> None:
        """Supervision stopped while ``process`` started: stop it (or leave it, adopted)."""


async def supervise(
    supervisee: Supervisee,
    policy: RestartPolicy,
    stopping: asyncio.Event,
    adopted: ProcessHandle | None = None,
) -> None:
    """Keep ``supervisee`` running until ``stopping`` is set or it gives up. ``adopted``: a
    process already serving (a previous regserve process left it), watched like any other."""
    crashes = 0
    restarted = adopted is not None  # an adopted worker's next start is a restart
    process = adopted
    while not stopping.is_set():
        if process is None:
            # Held from the launch until it serves or failed: every timeout of the start is
            # measured from when its turn came, not from when it began to wait for it.
            async with supervisee.turn():
                try:
                    process = await supervisee.launch()
                except (OSError, RegServeError) as exc:
                    supervisee.cannot_start(exc)
                    return
                ready = await supervisee.wait_ready(process)
                if stopping.is_set():  # stopped while it started: nobody else stops it
                    await supervisee.stopped_while_starting(process)
                    return
                if ready:
                    crashes = 0
                    await supervisee.serving(process, restarted)
                elif not await supervisee.unready(process):
                    return
        code = await supervisee.wait_exit(process)
        if stopping.is_set():
            return
        restarted = True
        why = await supervisee.explain(process, code)
        process = None
        charged = supervisee.charge(why)
        if charged is None:
            crashes += 1
            charged = crashes
            if crashes >= policy.max_restarts:
                supervisee.give_up(why, crashes)
                return
        delay = policy.delay(charged)
        supervisee.restarting(why, delay, charged)
        if delay > 0:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stopping.wait(), delay)


async def wait_until_ready(
    process: ProcessHandle,
    socket: Path,
    ping: Callable[[], Awaitable[Any]],
    stopping: asyncio.Event,
    timeout: float,
) -> bool:
    """Ping the process on ``socket`` until it answers (True); False when it exits, supervision
    stops, or ``timeout`` passes (then it is killed)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while process.returncode is None and not stopping.is_set():
        if os.path.exists(socket):  # noqa: ASYNC240 - one stat, not worth a thread
            with contextlib.suppress(RegServeError, OSError, ValueError):
                await ping()
                return True
        if loop.time() > deadline:
            process.kill()
            return False
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(asyncio.shield(process.wait()), _POLL)
    return False
