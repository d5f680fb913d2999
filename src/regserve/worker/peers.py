"""Who may talk to a worker: only regserve (its uid, or root), checked on every connection.

A worker's socket sits in a directory only its own user and regserve can enter; this is the
second lock: the kernel says who is connecting (``SO_PEERCRED``), and a connection from any
other uid (another model's process, the model's own children, a local user) is closed before
a single frame is read. Standard library only (it runs in the model's environment).
"""

from __future__ import annotations

import logging
import socket
import struct

__all__ = ["peer_allowed"]

_logger = logging.getLogger("regserve.worker")
_CREDENTIALS = struct.Struct("3i")


def peer_allowed(sock: socket.socket | None, allowed_uid: int | None) -> bool:
    """Whether the process at the other end of ``sock`` may use this worker.

    ``allowed_uid`` None: anyone who can reach the socket (a worker started by hand).
    """
    if allowed_uid is None:
        return True
    try:
        if sock is None:
            raise OSError("no socket")
        raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _CREDENTIALS.size)
        pid, uid, _ = _CREDENTIALS.unpack(raw)
    except (OSError, struct.error):
        _logger.warning("refused a connection whose peer cannot be told")
        return False
    if uid in (allowed_uid, 0):
        return True
    _logger.warning(
        "refused a connection from pid %d (uid %d): only regserve may connect", pid, uid
    )
    return False
