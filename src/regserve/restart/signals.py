"""How a signal ends the process: what happens to the workers, and whether regserve comes
back in place."""

from __future__ import annotations

import enum
import signal

__all__ = ["MODE_BY_SIGNAL", "ExitMode"]


class ExitMode(enum.Enum):
    """What happens to the workers (and the process) when serving stops."""

    STOP = "stop"
    """SIGINT: stop every worker, then exit."""
    KEEP_WORKERS = "keep-workers"
    """SIGTERM: exit, leaving the workers running for the next regserve process to adopt."""
    RESTART = "restart"
    """SIGHUP: re-execute in place with the listening socket; the new image adopts the workers."""


MODE_BY_SIGNAL: dict[signal.Signals, ExitMode] = {
    signal.SIGINT: ExitMode.STOP,
    signal.SIGTERM: ExitMode.KEEP_WORKERS,
    signal.SIGHUP: ExitMode.RESTART,
}
"""The signals regserve handles itself (uvicorn's own handlers are off)."""
