"""The warm process: one per (model, environment), with MLflow and the flavor's libraries imported
once, from which the model's templates are forked.

``python -m regserve.worker --warm --socket CONTROL --preload mlflow,pandas,sklearn [...]``

A template started cold pays an interpreter start and ``import mlflow, pandas, sklearn`` (most
of the 7-11 s a small model takes on a 2-core machine) before it loads its model. One forked
from the warm process has all of that in memory already and only loads its model: a new
version, a template lost with its standby, a scale-up cost a model load.

It imports the modules named (:func:`preload`; one that is missing is logged and skipped),
reads once what every model load asks MLflow (:func:`prime`: its map of installed packages,
which it builds to compare the model's requirements with the environment: 0.3-1 s on a 2-core
machine, in every template otherwise), then checks that it is still safe to fork
(:func:`~regserve.worker.template.fork_hazard`: a library that starts a thread when imported,
CUDA, TensorFlow, JAX); if not it exits with ``EXIT_FORK_UNSAFE`` and its supervisor starts
templates cold. Then it answers :mod:`.wire`
frames on its control socket (:mod:`.control`):

- ``TEMPLATE`` ``{"argv": [...]}`` with one descriptor (``SCM_RIGHTS``: the version's log, which
  a process running as the model's user could not open itself) -> ``pid``: a child in its own
  session, its output on that descriptor, that goes on as ``python -m regserve.worker *argv``
  would (``--template``: it loads the model and forks the version's replicas).
- ``EXIT`` ``{"pid": N}`` -> ``code``: how a template it forked ended.

It never loads a model itself and imports no model code: every version of the model (each
with its own code) is forked from the same process, so only the environment's libraries may be
in it. Standard library only, besides what it is told to import.
"""

from __future__ import annotations

import importlib
import logging
import os
import signal
import sys
import traceback
from collections.abc import Callable
from pathlib import Path

from regserve.worker import wire
from regserve.worker.control import ControlServer, error_reply

__all__ = ["preload", "prime", "serve_warm"]

_logger = logging.getLogger("regserve.worker")

Become = Callable[[list[str]], int]
"""Go on as ``python -m regserve.worker *argv`` (in the forked child): the exit code."""


def preload(modules: list[str]) -> list[str]:
    """Import ``modules``; the ones that could not be imported (logged, not fatal: a template
    forked later imports what its model needs itself)."""
    missing: list[str] = []
    for name in modules:
        try:
            importlib.import_module(name)
        except Exception as exc:  # an ImportError, or a library failing to initialise
            _logger.warning("warm process: could not import %s (%s)", name, exc)
            missing.append(name)
    return missing


def prime() -> None:
    """Build MLflow's map of the environment's installed packages (``load_model`` compares the
    model's requirements with it, and keeps it in a module global) once here, so that every
    template forked from this process finds it built. Best effort: a private function of
    MLflow's, so any error is logged and ignored (the template then builds it as before)."""
    if "mlflow" not in sys.modules:
        return
    try:
        requirements_utils = importlib.import_module("mlflow.utils.requirements_utils")
        requirements_utils._init_packages_to_modules_map()
    except Exception as exc:
        _logger.info("warm process: MLflow's package map not read ahead (%s)", exc)


class _Warm(ControlServer):
    role = "warm process"

    def __init__(
        self, control: Path, become: Become, orphan_timeout: float, peer_uid: int | None
    ) -> None:
        super().__init__(control, orphan_timeout, peer_uid)
        self._become = become

    def ready(self) -> None:
        _logger.info("warm process ready on %s: templates are forked from it", self._control)

    def answer(self, kind: wire.Kind, payload: bytes, fds: list[int]) -> wire.Reply:
        if kind is not wire.Kind.TEMPLATE:
            return super().answer(kind, payload, fds)
        argv = wire.decode_template_fork(payload)["argv"]
        if not fds:
            return error_reply("a TEMPLATE frame carries the log's descriptor")
        log = fds.pop(0)
        try:
            pid = self._fork(argv, log)
        finally:
            os.close(log)
        return {"ok": True, "error": "", "pid": pid}

    def _fork(self, argv: list[str], log: int) -> int:
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            self._become_template(argv, log)
        _logger.info("warm process: forked template pid %s", pid)
        return pid

    def _become_template(self, argv: list[str], log: int) -> None:
        """In the forked child: its own session, its output the version's log, then ``argv``."""
        code = 1
        try:
            self.close()
            os.setsid()
            for signum in (signal.SIGTERM, signal.SIGINT):
                signal.signal(signum, signal.SIG_DFL)
            os.dup2(log, 1)
            os.dup2(log, 2)
            os.close(log)
            _logger.info("template forked from the warm process pid %s", os.getppid())
            code = self._become(argv)
        except BaseException:  # nothing may return into the warm process's loop
            traceback.print_exc()
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)


def serve_warm(
    control: Path, become: Become, orphan_timeout: float, peer_uid: int | None = None
) -> int:
    """Answer TEMPLATE requests on ``control`` until stopped; each child runs ``become``."""
    return _Warm(control, become, orphan_timeout, peer_uid).run()
