"""Stopping and restarting the main process without dropping a request.

- **The listening socket** (:mod:`.listener`) is regserve's, not uvicorn's: bound before
  start-up (so clients that connect while regserve starts wait in the kernel's backlog instead
  of being refused), or inherited: from a previous regserve process that re-executed itself
  (``REGSERVE_LISTEN_FD``) or from systemd's socket activation (``LISTEN_FDS``/``LISTEN_PID``:
  the first socket, fd 3). uvicorn serves on a duplicate, so closing its listener does not
  close the socket.
- **How a signal ends the process** (:mod:`.signals`, :class:`ExitMode`): SIGINT (Ctrl-C)
  stops everything, workers included; SIGTERM drains and exits, leaving the workers for the
  next process to adopt (they stop by themselves after ``REGSERVE_ORPHAN_TIMEOUT`` if none
  comes); SIGHUP drains and re-executes regserve in place (same pid) with the socket
  inherited: connections that arrive meanwhile wait in the backlog and are answered by the new
  image, which adopts the workers.
- **Draining** (:mod:`.drain`, :class:`DrainGate`): once a stop begins, every response says
  ``Connection: close``, so keep-alive clients move to a new connection (which waits in the
  backlog) after their current answer instead of having an idle connection closed under them.
- **The pid file** (:mod:`.pidfile`): ``<data-dir>/regserve.pid``, where ``regserve restart``
  finds the process to send SIGHUP to.
"""

from __future__ import annotations

from regserve.restart.drain import DrainGate
from regserve.restart.listener import listening_socket, reexec
from regserve.restart.pidfile import read_pidfile, remove_pidfile, write_pidfile
from regserve.restart.signals import MODE_BY_SIGNAL, ExitMode

__all__ = [
    "MODE_BY_SIGNAL",
    "DrainGate",
    "ExitMode",
    "listening_socket",
    "read_pidfile",
    "reexec",
    "remove_pidfile",
    "write_pidfile",
]
