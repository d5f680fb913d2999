"""The control socket of a process that forks workers (a template, a warm process).

One thread, no event loop (a fork copies only the calling thread): a selector over a listening
Unix socket and its supervisors' connections, each request a :mod:`.wire` frame answered by one
``REPLY``. It reaps the children it forked and remembers how they ended (``EXIT``: its
supervisor watches them through pidfds but, not being their parent, cannot read their exit
status), and stops on SIGTERM or SIGINT, or once no supervisor has been connected for
``orphan_timeout`` seconds. It accepts connections only from ``peer_uid`` (regserve) and root.

A frame may carry file descriptors (``SCM_RIGHTS``): they are queued per connection, in the
order they came, for the request that takes them (:meth:`ControlServer.answer`); the ones left
when the connection closes are closed. Standard library only (it runs in the model's
environment).
"""

from __future__ import annotations

import contextlib
import logging
import os
import selectors
import signal
import socket
import time
from pathlib import Path

from regserve.worker import wire
from regserve.worker.peers import peer_allowed

__all__ = ["ControlServer", "error_reply"]

_logger = logging.getLogger("regserve.worker")
_TICK = 0.5
_KEPT_EXIT_CODES = 256
_MAX_FDS = 4


class ControlServer:
    """Answers control frames on ``control``; a subclass says how (:meth:`answer`)."""

    role = "control"
    """What the process is, in its log lines ("template", "warm process")."""

    def __init__(self, control: Path, orphan_timeout: float, peer_uid: int | None) -> None:
        self._control = control
        self._peer_uid = peer_uid
        self._orphan_timeout = orphan_timeout
        self._selector = selectors.DefaultSelector()
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._readers: dict[socket.socket, wire.FrameReader] = {}
        """The supervisors connected (one, or none while it restarts)."""
        self._fds: dict[socket.socket, list[int]] = {}
        """Descriptors each connection sent, not yet taken by a request."""
        self._exit_codes: dict[int, int] = {}
        self._stopping = False

    def answer(self, kind: wire.Kind, payload: bytes, fds: list[int]) -> wire.Reply:
        """The REPLY to one frame (``fds``: the connection's queued descriptors, to take from).
        A forked child never returns from here."""
        if kind is wire.Kind.EXIT:
            code = self.exit_code(int(wire.decode_exit(payload)["pid"]))
            return {"ok": True, "error": "", "code": code}
        return error_reply(f"a {self.role} does not take {kind.name}")

    def run(self) -> int:
        self._control.unlink(missing_ok=True)
        self._listener.bind(str(self._control))
        self._listener.listen(8)
        self._selector.register(self._listener, selectors.EVENT_READ)
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self._stop)
        self.ready()
        try:
            self._loop()
        finally:
            self.close()
            self._control.unlink(missing_ok=True)
        return 0

    def ready(self) -> None:
        """Called once it listens (a log line)."""

    def _stop(self, signum: int, frame: object) -> None:
        self._stopping = True

    def _loop(self) -> None:
        alone_since: float | None = None
        while not self._stopping:
            for key, _ in self._selector.select(_TICK):
                if key.fileobj is self._listener:
                    self._accept()
                else:
                    self._receive(key.fileobj)  # type: ignore[arg-type]
            self._reap()
            if self._readers or self._orphan_timeout <= 0:
                alone_since = None
            elif alone_since is None:
                alone_since = time.monotonic()
            elif time.monotonic() - alone_since >= self._orphan_timeout:
                _logger.warning(
                    "%s: no supervisor for %g s, stopping", self.role, self._orphan_timeout
                )
                return

    def _accept(self) -> None:
        with contextlib.suppress(OSError):
            connection, _ = self._listener.accept()
            if not peer_allowed(connection, self._peer_uid):
                connection.close()
                return
            self._readers[connection] = wire.FrameReader()
            self._fds[connection] = []
            self._selector.register(connection, selectors.EVENT_READ)

    def _receive(self, connection: socket.socket) -> None:
        try:
            data, fds, _, _ = socket.recv_fds(connection, 65536, _MAX_FDS)
        except OSError:
            data, fds = b"", []
        self._fds[connection].extend(fds)
        if not data:
            self._drop(connection)
            return
        reader = self._readers[connection]
        while True:
            try:
                for frame in reader.feed(data):
                    reply = self._answer(frame.kind, frame.payload, self._fds[connection])
                    if not self._send(connection, wire.encode_reply(frame.request_id, reply)):
                        return
                return
            except wire.UnknownKindError as exc:  # skipped: answer it, go on with the rest
                if not self._send(connection, wire.encode_reply(exc.request_id, error_reply(exc))):
                    return
                data = b""

    def _answer(self, kind: wire.Kind, payload: bytes, fds: list[int]) -> wire.Reply:
        try:
            return self.answer(kind, payload, fds)
        except (ValueError, KeyError, TypeError) as exc:
            return error_reply(f"bad request: {exc!r}")
        except OSError as exc:
            return error_reply(f"could not fork: {exc}")

    def _send(self, connection: socket.socket, frame: bytes) -> bool:
        try:
            connection.sendall(frame)
        except OSError:
            self._drop(connection)
            return False
        return True

    def _drop(self, connection: socket.socket) -> None:
        self._selector.unregister(connection)
        self._readers.pop(connection, None)
        for fd in self._fds.pop(connection, []):
            with contextlib.suppress(OSError):
                os.close(fd)
        connection.close()

    def _reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            self._keep(pid, status)

    def _keep(self, pid: int, status: int) -> None:
        if len(self._exit_codes) >= _KEPT_EXIT_CODES:
            self._exit_codes.pop(next(iter(self._exit_codes)))
        self._exit_codes[pid] = os.waitstatus_to_exitcode(status)

    def exit_code(self, pid: int) -> int | None:
        """How the child ``pid`` ended (None: it runs, or it is not this process's child)."""
        with contextlib.suppress(ChildProcessError):
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                self._keep(done, status)
        return self._exit_codes.get(pid)

    def close(self) -> None:
        """Let go of the sockets and the descriptors received (also in a forked child)."""
        for connection in list(self._readers):
            for fd in self._fds.get(connection, []):
                with contextlib.suppress(OSError):
                    os.close(fd)
            connection.close()
        self._readers.clear()
        self._fds.clear()
        self._listener.close()
        self._selector.close()


def error_reply(why: object) -> wire.Reply:
    return {"ok": False, "error": str(why)}
