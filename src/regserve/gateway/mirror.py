"""Shadow (mirror) traffic: a copy of some split-URL requests, sent to the traffic config's
shadow ref off the caller's path.

The copy leaves only after the caller's answer was sent, runs as its own task, and whatever
happens to it (an answer, an error, a timeout) reaches only the sinks: never the caller.
Each outcome is handed to every sink as a :class:`ShadowAnswer`, the request and answer
bodies included, so that a sink can record them (the metrics count them; the inference
table keeps those of captured requests). At most ``limit`` copies are in flight; a copy over that is
dropped (and counted), so a slow shadow never holds more than that much memory.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from regserve.router import ServedVersion
from regserve.worker import wire

__all__ = ["Mirror", "ShadowAnswer", "ShadowSink"]

_log = logging.getLogger("regserve.gateway")


@dataclass(frozen=True)
class ShadowAnswer:
    """What became of one mirrored copy."""

    model: str
    ref: str
    """The shadow ref of the traffic config."""
    version: str
    outcome: str
    """The answer's HTTP status; ``failed`` (no answer) or ``dropped`` (never sent)."""
    seconds: float
    content_type: str | None
    request: bytes
    reply: wire.Response | None
    request_id: str | None = None
    """The request id of the caller's request when it is captured (inference table); None:
    the copy is not captured."""
    caller: str = ""
    """The principal who sent the caller's request."""


ShadowSink = Callable[[ShadowAnswer], None]
"""Called on the event loop for every copy: must not block (hand slow work to a queue)."""


class Mirror:
    """Sends copies to shadow versions and hands what became of them to ``sinks``."""

    def __init__(self, timeout: float, sinks: Sequence[ShadowSink], limit: int = 64) -> None:
        self._timeout = timeout
        self._sinks = tuple(sinks)
        self._limit = limit
        self._tasks: set[asyncio.Task[None]] = set()

    def send(
        self,
        model: str,
        ref: str,
        served: ServedVersion,
        content_type: str | None,
        body: bytes,
        request_id: str | None = None,
        caller: str = "",
    ) -> None:
        """Mirror a request to ``served`` without waiting for it (``request_id`` and
        ``caller`` are handed to the sinks with its answer)."""
        copy = ShadowAnswer(
            model, ref, served.version, "dropped", 0.0, content_type, body, None, request_id, caller
        )
        if len(self._tasks) >= self._limit:
            self._deliver(copy)
            return
        task = asyncio.get_running_loop().create_task(self._copy(served, copy))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _copy(self, served: ServedVersion, copy: ShadowAnswer) -> None:
        """Send ``copy`` (not sent yet) to ``served``, then hand over what became of it."""
        started = time.perf_counter()
        reply: wire.Response | None = None
        try:
            assert served.target is not None  # router.py hands out READY versions only
            reply = await served.target.request(copy.content_type, copy.request, self._timeout)
            outcome = str(reply.status)
        except Exception:  # anything: the copy's fate is the sinks' business, not the caller's
            _log.debug("shadow copy to %s v%s failed", copy.model, copy.version, exc_info=True)
            outcome = "failed"
        elapsed = time.perf_counter() - started
        self._deliver(replace(copy, outcome=outcome, seconds=elapsed, reply=reply))

    def _deliver(self, answer: ShadowAnswer) -> None:
        for sink in self._sinks:
            try:
                sink(answer)
            except Exception:  # a broken sink must not stop the others
                _log.exception("a shadow sink failed")

    async def drain(self) -> None:
        """Until every copy in flight now has been answered and handed to the sinks."""
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    @property
    def in_flight(self) -> int:
        """Copies sent and not answered yet."""
        return len(self._tasks)
