"""The listening socket: bound before start-up, or inherited (from the previous image after a
restart in place, or from systemd's socket activation), and handed on when regserve
re-executes itself."""

from __future__ import annotations

import os
import socket
import sys

from regserve.settings import Settings

__all__ = ["listening_socket", "reexec"]

_SYSTEMD_FIRST_FD = 3
_BACKLOG = 2048


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
