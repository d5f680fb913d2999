"""The local backend's worker starts: at most ``REGSERVE_WORKER_START_PARALLELISM`` at once,
taken in order.

A start that loads a model (a template forked from the warm process, a template or a worker
started cold) costs seconds of CPU. Forty of them at once on two cores all miss their start
timeout, are killed and started again, and nothing ever serves. So every such start of every
replica set waits for a *turn* here, and holds it from its launch until it serves (or failed):

- **bounded**: at most ``slots`` turns are held at once; the rest wait;
- **ordered**: the waiting starts go by :class:`StartPriority`, then in the order they came:
  a crashed worker that had served first (its version was serving: availability first), then
  versions a stage or an alias points at, then versions called lately (the most recent
  first), then the newest versions;
- **timed from the turn**: nothing here counts against a start timeout; a supervisor measures
  its timeouts from when it launched, after its turn came;
- **told**: a waiting start is told how many starts are ahead of it each time that changes.

A fork from a template that already runs costs milliseconds and takes no turn (the replica set
decides that, :mod:`.replicas`). The warm processes take none either: there is one per model
and environment, and the first templates wait for it anyway.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import enum
import itertools
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

__all__ = ["StartPriority", "StartQueue", "Turn", "Urgency"]

Ahead = Callable[[int], None]
"""Told the number of starts ahead of a waiting one, when it starts waiting and as it moves."""


class Urgency(enum.IntEnum):
    """Which starts go first (lower first)."""

    RESTART = 0
    """A worker that served and crashed: its version was serving."""
    POINTED_AT = 1
    """A version a stage or an alias points at: what callers name."""
    CALLED = 2
    """A version that was called lately (before a restart of regserve, or a re-enable)."""
    OTHER = 3


@dataclass(frozen=True, order=True)
class StartPriority:
    """Where a start stands among the waiting ones: smaller goes first (fields in order)."""

    urgency: Urgency
    latest_call: int = 0
    """Minus the time of the version's last call (ms): the most recently called go first."""
    newest: int = 0
    """Minus the version's registration time (ms): newer versions go first."""

    @classmethod
    def of(cls, urgency: Urgency, registered_at: int, called_at: int = 0) -> StartPriority:
        return cls(urgency, -called_at, -registered_at)


@dataclass(order=True)
class _Ticket:
    priority: StartPriority
    sequence: int
    granted: asyncio.Future[None] = field(compare=False)
    ahead: Ahead | None = field(compare=False)
    told: int = field(default=-1, compare=False)


@dataclass(frozen=True)
class Turn:
    """A start's turn, while it is held."""

    queued: bool
    """It had to wait (no slot was free, or others waited already)."""
    waited: float
    """Seconds it waited for it."""
    ahead: int
    """Starts that were ahead of it when it came."""


class StartQueue:
    """Turns for starting workers, ``slots`` at most at once."""

    def __init__(self, slots: int) -> None:
        if slots < 1:
            raise ValueError("a start queue needs at least one slot")
        self.slots = slots
        self._held = 0
        self._waiting: list[_Ticket] = []
        """Sorted: the next to go first."""
        self._sequence = itertools.count()

    @property
    def running(self) -> int:
        """Turns held now."""
        return self._held

    @property
    def waiting(self) -> int:
        """Starts waiting for a turn now."""
        return len(self._waiting)

    @contextlib.asynccontextmanager
    async def turn(
        self, priority: StartPriority, ahead: Ahead | None = None
    ) -> AsyncIterator[Turn]:
        """Wait for a turn (``ahead`` is told the place while waiting) and hold it in the
        ``async with`` block; it passes to the next waiting start when the block ends."""
        came = time.monotonic()
        first = 0
        queued = self._held >= self.slots or bool(self._waiting)
        if queued:
            first = await self._wait(priority, ahead)
        else:
            self._held += 1
        try:
            yield Turn(queued, time.monotonic() - came, first)
        finally:
            self._release()

    async def _wait(self, priority: StartPriority, ahead: Ahead | None) -> int:
        loop = asyncio.get_running_loop()
        ticket = _Ticket(priority, next(self._sequence), loop.create_future(), ahead)
        bisect.insort(self._waiting, ticket)
        first = self._waiting.index(ticket)
        self._tell()
        try:
            await ticket.granted
        except BaseException:
            if ticket in self._waiting:  # cancelled while waiting: it leaves the line
                self._waiting.remove(ticket)
                self._tell()
            elif ticket.granted.done() and not ticket.granted.cancelled():
                self._release()  # granted, but cancelled before it could run: pass it on
            raise
        return first

    def _release(self) -> None:
        self._held -= 1
        while self._held < self.slots and self._waiting:
            ticket = self._waiting.pop(0)
            if ticket.granted.done():  # cancelled meanwhile
                continue
            self._held += 1
            ticket.granted.set_result(None)
        self._tell()

    def _tell(self) -> None:
        """Tell every waiting start whose place changed how many are ahead of it now."""
        for place, ticket in enumerate(self._waiting):
            if ticket.told != place and ticket.ahead is not None:
                ticket.told = place
                ticket.ahead(place)
