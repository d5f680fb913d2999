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
- **told**: a waiting start is told how many starts are ahead of it each time that changes;
- **settled**: a start that finds a slot free waits until no other start came for ``settle``
  seconds (``settle_max`` at most) before it takes it. An enable or a restart of regserve
  begins many starts, each after downloading its model, so they come spread over a second or
  two; without this the first two to finish downloading would take the slots, whatever their
  priority. A lone start pays ``settle`` (0.2 s) on a start of seconds. A ``RESTART`` (a
  version that was serving: requests wait for it, e.g. an idle version woken by one) does not
  settle when a slot is free and nobody waits: nothing that could come is more urgent.

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
    first: int = field(default=0, compare=False)
    """Starts ahead of it when it came."""
    settling: bool = field(default=False, compare=False)
    """It came when a slot was free, and waits only for the others that come with it."""


@dataclass(frozen=True)
class Turn:
    """A start's turn, while it is held."""

    queued: bool
    """It had to wait (no slot was free, or others went first); not for settling alone."""
    waited: float
    """Seconds it waited for it."""
    ahead: int
    """Starts that were ahead of it when it came."""


class StartQueue:
    """Turns for starting workers, ``slots`` at most at once."""

    def __init__(self, slots: int, settle: float = 0.2, settle_max: float = 2.0) -> None:
        if slots < 1:
            raise ValueError("a start queue needs at least one slot")
        self.slots = slots
        self.settle = settle
        self.settle_max = settle_max
        self._held = 0
        self._waiting: list[_Ticket] = []
        """Sorted: the next to go first."""
        self._sequence = itertools.count()
        self._settling_since = 0.0
        self._dispatch: asyncio.TimerHandle | None = None
        """Grants the free slots when the starts that came together have settled."""

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
        urgent = priority.urgency is Urgency.RESTART
        if self._held < self.slots and not self._waiting and (self.settle <= 0 or urgent):
            self._held += 1
            turn = Turn(False, 0.0, 0)
        else:
            ticket = await self._wait(priority, ahead)
            waited = time.monotonic() - came
            turn = Turn(not ticket.settling, waited, 0 if ticket.settling else ticket.first)
        try:
            yield turn
        finally:
            self._release()

    async def _wait(self, priority: StartPriority, ahead: Ahead | None) -> _Ticket:
        loop = asyncio.get_running_loop()
        ticket = _Ticket(priority, next(self._sequence), loop.create_future(), ahead)
        bisect.insort(self._waiting, ticket)
        ticket.first = self._waiting.index(ticket)
        if self._held < self.slots:
            ticket.settling = True
            self._settle_later(loop)
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
        return ticket

    def _settle_later(self, loop: asyncio.AbstractEventLoop) -> None:
        """Grant the free slots once no start came for ``settle`` s (``settle_max`` at most
        after the first of them came)."""
        now = loop.time()
        if self._dispatch is None:
            self._settling_since = now
        else:
            self._dispatch.cancel()
        delay = min(self.settle, self._settling_since + self.settle_max - now)
        self._dispatch = loop.call_later(max(delay, 0.0), self._settled)

    def _settled(self) -> None:
        self._dispatch = None
        self._grant()

    def _release(self) -> None:
        self._held -= 1
        self._grant()

    def _grant(self) -> None:
        while self._held < self.slots and self._waiting:
            ticket = self._waiting.pop(0)
            if ticket.granted.done():  # cancelled meanwhile
                continue
            self._held += 1
            ticket.granted.set_result(None)
        for ticket in self._waiting:  # the rest wait for a slot, not only for the others
            ticket.settling = False
        self._tell()

    def _tell(self) -> None:
        """Tell every waiting start whose place changed how many are ahead of it now (not
        while it only settles: it has a slot once the others that came with it did)."""
        for place, ticket in enumerate(self._waiting):
            if ticket.settling:
                continue
            if ticket.told != place and ticket.ahead is not None:
                ticket.told = place
                ticket.ahead(place)
