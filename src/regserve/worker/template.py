"""The template worker: loads a version's model once, then forks the version's replicas from it.

``python -m regserve.worker --template --socket CONTROL --model-path DIR [worker options]``

A fresh worker spends seconds importing MLflow and loading the model (7 s for a small sklearn
model on a 2-core machine). A replica forked from the template has all of that in memory already
(shared copy-on-write with the template, the long-lived objects frozen out of the collector's
reach) and serves within milliseconds: this is what makes a crashed replica come back at once.

The template never serves a request and runs no event loop or thread of its own. Its supervisor
sends frames of :mod:`.wire` on the control socket, each answered by a ``REPLY``
(``{"ok": false, "error": ...}`` when it cannot be done):

- ``FORK`` ``{"socket": PATH, "orphan_timeout": S}`` -> ``pid``: a replica serving on
  ``socket`` (its own session; its output goes where the template's goes: the version's log,
  which a template running as the model's user could not open itself). It is not tied to the
  template: it outlives it, and regserve's next process adopts it like any worker.
- ``EXIT`` ``{"pid": N}`` -> ``code``: how a forked replica ended (as
  :func:`os.waitstatus_to_exitcode`, e.g. -9 for SIGKILL), or ``null`` when it is unknown.
- ``STANDBY`` ``{"socket": PATH}`` -> ``pid``: a standby, a copy of this template (forked: the
  loaded model's pages shared) listening on ``PATH`` in a session of its own. It answers the
  same requests; its supervisor promotes it when this template dies.

It stops on SIGTERM or SIGINT, or once no supervisor has been connected for ``orphan_timeout``
seconds. Like a worker, it accepts connections only from ``peer_uid`` (regserve) and root.
Standard library only (it runs in the model's environment).

A model is forked only when that is safe: :func:`fork_hazard` names what would not survive
``fork()`` (a thread the model started while loading, CUDA initialised, a runtime known to
deadlock in a forked child), and the worker then exits instead of becoming a template
(``EXIT_FORK_UNSAFE``): its supervisor starts the replicas as fresh workers.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import threading
import traceback
from collections.abc import Callable
from pathlib import Path

from regserve.worker import wire
from regserve.worker.control import ControlServer

__all__ = ["fork_hazard", "serve_template"]

_logger = logging.getLogger("regserve.worker")

Serve = Callable[[Path, float], int]
"""Serve the loaded model on a socket until stopped (in the forked replica): the exit code."""

_UNFORKABLE_RUNTIMES = {
    "tensorflow": "TensorFlow's runtime",
    "jax": "JAX's runtime",
}
"""Libraries whose own threads make a forked child deadlock, once they are imported."""


def fork_hazard() -> str | None:
    """Why forking this process now would give replicas that may hang, or None when it is safe.

    A forked child has only the thread that forked: the locks other threads held stay held
    for ever, and the work they did never happens. So: no thread but this one may run (the
    model's own, or one a library started while loading), CUDA must not be initialised, and
    runtimes that keep thread pools of their own (TensorFlow, JAX) must not be loaded. Native
    pools that prepare for ``fork()`` themselves (OpenBLAS, OpenMP) are fine. Looks only at
    modules already imported: it imports nothing.
    """
    others = [t.name for t in threading.enumerate() if t is not threading.current_thread()]
    if others:
        return f"the model started threads while loading: {', '.join(sorted(others))}"
    torch = sys.modules.get("torch")
    cuda = getattr(torch, "cuda", None)
    with contextlib.suppress(Exception):  # any torch, any build
        if cuda is not None and cuda.is_initialized():
            return "CUDA was initialised while loading (torch)"
    loaded = [what for module, what in _UNFORKABLE_RUNTIMES.items() if module in sys.modules]
    if loaded:
        return f"{' and '.join(loaded)} is loaded, which does not survive fork()"
    return None


class _Template(ControlServer):
    role = "template"

    def __init__(
        self, control: Path, serve: Serve, orphan_timeout: float, peer_uid: int | None
    ) -> None:
        super().__init__(control, orphan_timeout, peer_uid)
        self._serve = serve

    def ready(self) -> None:
        _logger.info("template ready on %s: replicas are forked from this process", self._control)

    def answer(self, kind: wire.Kind, payload: bytes, fds: list[int]) -> wire.Reply:
        # A forked child never returns here: it ends in os._exit.
        if kind is wire.Kind.FORK:
            fork = wire.decode_fork(payload)
            pid = self._fork(Path(fork["socket"]), float(fork["orphan_timeout"]))
            return {"ok": True, "error": "", "pid": pid}
        if kind is wire.Kind.STANDBY:
            pid = self._fork_standby(Path(wire.decode_standby(payload)["socket"]))
            return {"ok": True, "error": "", "pid": pid}
        return super().answer(kind, payload, fds)

    def _fork(self, socket_path: Path, orphan_timeout: float) -> int:
        socket_path.unlink(missing_ok=True)
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            self._become_replica(socket_path, orphan_timeout)
        _logger.info("template: forked replica pid %s for %s", pid, socket_path)
        return pid

    def _fork_standby(self, socket_path: Path) -> int:
        socket_path.unlink(missing_ok=True)
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            self._become_standby(socket_path)
        _logger.info("template: forked standby pid %s on %s", pid, socket_path)
        return pid

    def _become_standby(self, socket_path: Path) -> None:
        """In the forked child: a template of its own on ``socket_path``."""
        code = 1
        try:
            self.close()
            os.setsid()
            _logger.info("standby template forked from pid %s", os.getppid())
            code = _Template(socket_path, self._serve, self._orphan_timeout, self._peer_uid).run()
        except BaseException:  # nothing may return into the template's loop
            traceback.print_exc()
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)

    def _become_replica(self, socket_path: Path, orphan_timeout: float) -> None:
        """In the forked child: let go of the template's sockets and signals, then serve."""
        code = 1
        try:
            self.close()
            os.setsid()
            for signum in (signal.SIGTERM, signal.SIGINT):
                signal.signal(signum, signal.SIG_DFL)
            _logger.info("forked from template pid %s", os.getppid())
            code = self._serve(socket_path, orphan_timeout)
        except BaseException:  # nothing may return into the template's loop
            traceback.print_exc()
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)


def serve_template(
    control: Path, serve: Serve, orphan_timeout: float, peer_uid: int | None = None
) -> int:
    """Answer fork requests on ``control`` until stopped; each replica runs ``serve``."""
    return _Template(control, serve, orphan_timeout, peer_uid).run()
