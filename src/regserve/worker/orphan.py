"""The orphan watch: a worker nobody supervises any more stops by itself.

A worker outlives its regserve process so that the next one can adopt it (see
``regserve.backends.local.worker_records``). Its supervisor keeps a connection open to it for
as long as it supervises it; when no connection at all has been open for ``timeout`` seconds, nobody
came to adopt it, and it stops as on SIGTERM. Standard library only.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sized

__all__ = ["watch_orphan"]

_logger = logging.getLogger("regserve.worker")


async def watch_orphan(
    timeout: float, connections: Sized, stop: Callable[[], None], tick: float = 1.0
) -> None:
    """Call ``stop`` once ``connections`` has been empty for ``timeout`` seconds (0: never)."""
    if timeout <= 0:
        return
    loop = asyncio.get_running_loop()
    tick = min(tick, timeout / 4)
    alone_since: float | None = None
    while True:
        await asyncio.sleep(tick)
        if len(connections):
            alone_since = None
            continue
        now = loop.time()
        if alone_since is None:
            alone_since = now
            _logger.info("no supervisor connected; stopping in %g s unless one comes", timeout)
        elif now - alone_since >= timeout:
            _logger.warning("no supervisor for %g s: stopping (orphaned)", timeout)
            stop()
            return
