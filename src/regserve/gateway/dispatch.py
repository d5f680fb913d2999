"""Dispatch: a scoring request sent to the version its ref names, waiting for one that is not
ready yet instead of refusing it.

A version with no ready replica (starting, restarting after a crash, a template taking over)
makes its requests **wait at the gateway**, not fail: each one waits until the routing table
changes (a replica is ready again) and is sent then. The wait is bounded three ways:

- the request's own deadline (``REGSERVE_REQUEST_TIMEOUT``, from its arrival: waiting and
  answering together; past it a 504), and at most ``REGSERVE_UNAVAILABLE_WAIT`` of waiting
  (then a 503 saying what the version is doing);
- the queue: at most ``REGSERVE_MAX_QUEUED_REQUESTS`` requests of one model wait at once; the
  next gets a 503 with ``Retry-After`` at once;
- a FAILED version is not waited for (503, ``Retry-After: 30``).

A request that reached a worker which died before answering is sent again (to another
replica, or to the restarted one), twice at most: two workers may die at once (the second
one before its death was seen), but a request that kills every worker it reaches must not go
on killing them.
"""

from __future__ import annotations

import random
import time
from collections import Counter

from regserve.errors import DeadlineExceededError, UnavailableError
from regserve.metrics import TrafficRecorder
from regserve.router import Router
from regserve.settings import Settings
from regserve.worker import wire

__all__ = ["Dispatch"]

_WAITABLE = 2
"""Retry-After of the refusals worth waiting out (not ready yet, no replica up); a FAILED
version says 30."""
_RESENDS = 2
"""Times a request whose worker died under it is sent again."""
_RECHECK = 0.25
"""Longest wait between two looks at the version (routing changes wake it earlier)."""


class Dispatch:
    """Sends requests to versions; holds those that wait for one (see the module docstring)."""

    def __init__(self, settings: Settings, router: Router, recorder: TrafficRecorder) -> None:
        self._router = router
        self._recorder = recorder
        self._timeout = settings.request_timeout
        self._wait = min(settings.unavailable_wait, settings.request_timeout)
        self._max_queued = settings.max_queued_requests
        self.queued: Counter[str] = Counter()
        """Requests waiting now, by model (for ``/metrics`` and the queue bound)."""

    async def send(
        self, name: str, ref: str | None, content_type: str | None, body: bytes
    ) -> tuple[str, str, wire.Response]:
        """(the ref that was called, the version that answered, its answer); ``ref`` None:
        the split URL, whose ref is drawn from the model's traffic config (again on each
        look, so a wait ends on any route that becomes ready). Raises what the router or the
        target raise: NotFoundError, UnavailableError (503), DeadlineExceededError (504)."""
        arrived = time.monotonic()
        deadline, give_up = arrived + self._timeout, arrived + self._wait
        resends, queued = 0, False
        try:
            while True:
                try:
                    # Nothing awaits between resolving and the target counting the request: a
                    # version being withdrawn knows every request it still has to answer.
                    if ref is None:
                        called, served = self._router.draw(name, random.random())
                    else:
                        called, served = ref, self._router.resolve(name, ref)
                    assert served.target is not None
                    remaining = max(deadline - time.monotonic(), 0.001)
                    self._recorder.opened(name, served.version)
                    try:
                        reply = await served.target.request(content_type, body, remaining)
                    finally:
                        self._recorder.closed(name, served.version)
                    return called, served.version, reply
                except DeadlineExceededError:
                    # the target saw what was left of the deadline; the caller set the whole
                    raise DeadlineExceededError(
                        f"Version {served.version} of '{name}' did not answer within "
                        f"{self._timeout:g} s (the request timeout, "
                        "REGSERVE_REQUEST_TIMEOUT); the request was abandoned."
                    ) from None
                except UnavailableError as error:
                    if error.retry_after > _WAITABLE or (error.sent and resends >= _RESENDS):
                        raise
                    if error.sent:  # at once: another replica may be ready
                        resends += 1
                        continue
                    now = time.monotonic()
                    if now >= give_up:
                        raise _waited_too_long(error, now - arrived) from None
                    if not queued:
                        self._enter(name)
                        queued = True
                    await self._router.changed(min(give_up - now, _RECHECK))
        finally:
            if queued:
                self.queued[name] -= 1

    def _enter(self, name: str) -> None:
        if self.queued[name] >= self._max_queued:
            raise UnavailableError(
                f"{self.queued[name]} requests to model '{name}' already wait for a ready "
                f"replica (REGSERVE_MAX_QUEUED_REQUESTS); retry shortly.",
                retry_after=1,
            )
        self.queued[name] += 1


def _waited_too_long(error: UnavailableError, waited: float) -> UnavailableError:
    return UnavailableError(
        f"{error.message} (waited {waited:.1f} s for it: REGSERVE_UNAVAILABLE_WAIT)",
        retry_after=error.retry_after,
    )
