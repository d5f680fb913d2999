"""Requests per second per token: a token bucket each, in this process's memory."""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable

from regserve.errors import RateLimitedError

__all__ = ["RateLimiter"]


class RateLimiter:
    """Allows ``rate`` requests per second per key, in bursts of up to ``max(1, rate)``.

    Buckets of keys not seen for a while are dropped (at most ``size`` kept); a dropped bucket
    comes back full, which is what an idle key's bucket would be anyway.
    """

    def __init__(
        self, rate: float, size: int = 100_000, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._rate = rate
        self._burst = max(1.0, rate)
        self._size = size
        self._clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def check(self, key: str) -> None:
        """Take one request from ``key``'s bucket; RateLimitedError when it is empty."""
        now = self._clock()
        tokens, last = self._buckets.get(key, (self._burst, now))
        tokens = min(self._burst, tokens + (now - last) * self._rate)
        if tokens < 1.0:
            self._buckets[key] = (tokens, now)
            wait = math.ceil((1.0 - tokens) / self._rate)
            raise RateLimitedError(
                f"Too many requests: this token may send {self._rate:g} per second. "
                f"Retry after {wait} s.",
                retry_after=max(1, wait),
            )
        self._buckets[key] = (tokens - 1.0, now)
        self._buckets.move_to_end(key)
        if len(self._buckets) > self._size:
            self._buckets.popitem(last=False)
