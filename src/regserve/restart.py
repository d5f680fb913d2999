"""Stopping and restarting the main process without dropping a request.

- **The listening socket** is regserve's, not uvicorn's: bound before start-up (so clients that
  connect while regserve starts wait in the kernel's backlog instead of being refused), or
  inherited: from a previous regserve process that re-executed itself (``REGSERVE_LISTEN_FD``)
  or from systemd's socket activation (``LISTEN_FDS``/``LISTEN_PID``: the first socket, fd 3).
  uvicorn serves on a duplicate, so closing its listener does not close the socket.
- **How a signal ends the process** (:class:`ExitMode`): SIGINT (Ctrl-C) stops everything,
  workers included; SIGTERM drains and exits, leaving the workers for the next process to
  adopt (they stop by themselves after ``REGSERVE_ORPHAN_TIMEOUT`` if none comes); SIGHUP
  drains and re-executes regserve in place (same pid) with the socket inherited: connections
  that arrive meanwhile wait in the backlog and are answered by the new image, which adopts the
  workers.
- **Draining** (:class:`DrainGate`): once a stop begins, every response says
  ``Connection: close``, so keep-alive clients move to a new connection (which waits in the
  backlog) after their current answer instead of having an idle connection closed under them.
"""

from __future__ import annotations

import enum
import os
import socket
import sys
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any

from regserve.settings import Settings

__all__ = [
    "DrainGate",
    "ExitMode",
    "listening_socket",
    "read_pidfile",
    "reexec",
    "remove_pidfile",
    "write_pidfile",
]

_SYSTEMD_FIRST_FD = 3
_BACKLOG = 2048
_PIDFILE = "regserve.pid"

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class ExitMode(enum.Enum):
    """What happens to the workers (and the process) when serving stops."""

    STOP = "stop"
    """SIGINT: stop every worker, then exit."""
    KEEP_WORKERS = "keep-workers"
    """SIGTERM: exit, leaving the workers running for the next regserve process to adopt."""
    RESTART = "restart"
    """SIGHUP: re-execute in place with the listening socket; the new image adopts the workers."""


def listening_socket(settings: Settings) -> socket.socket:
    """The socket to serve on: inherited (re-exec, then systemd) or bound to host:port."""
    if settings.listen_fd is not None:
        return _adopt_fd(settings.listen_fd)
    if settings.systemd_listen_fds and settings.systemd_listen_pid == os.getpid():
        return _adopt_fd(_SYSTEMD_FIRST_FD)
    family = socket.AF_INET6 if ":" in settings.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((settings.host, settings.port))
    except OSError:
        sock.close()
        raise
    sock.listen(_BACKLOG)
    return sock


def _adopt_fd(fd: int) -> socket.socket:
    sock = socket.socket(fileno=fd)
    sock.set_inheritable(False)  # only a re-exec hands it on, explicitly
    return sock


def reexec(sock: socket.socket) -> None:
    """Replace this process's image with a fresh regserve (same command line, same pid) that
    serves on ``sock``. Does not return."""
    fd = sock.fileno()
    os.set_inheritable(fd, True)
    env = {k: v for k, v in os.environ.items() if k not in ("LISTEN_FDS", "LISTEN_PID")}
    env["REGSERVE_LISTEN_FD"] = str(fd)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, sys.orig_argv, env)


class DrainGate:
    """Wraps the gateway: while ``draining``, responses close their connection after them."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.draining = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not self.draining or scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def closing(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [*message.get("headers", ()), (b"connection", b"close")]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, closing)


def write_pidfile(data_dir: Path) -> None:
    """``<data-dir>/regserve.pid``: where ``regserve restart`` finds this process."""
    (data_dir / _PIDFILE).write_text(f"{os.getpid()}\n")


def remove_pidfile(data_dir: Path) -> None:
    path = data_dir / _PIDFILE
    try:
        if int(path.read_text().strip()) == os.getpid():
            path.unlink()
    except (OSError, ValueError):
        pass


def read_pidfile(data_dir: Path) -> int | None:
    """The pid of the regserve serving ``data_dir``, if it runs."""
    try:
        pid = int((data_dir / _PIDFILE).read_text().strip())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError):
        return None
    return pid if b"regserve" in cmdline else None
