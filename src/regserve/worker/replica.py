"""ScoringReplica: one model version served inside a Ray Serve replica (``--backend ray``).

It is the same worker as a local one without the socket: it gets its version's files itself
(from regserve's gateway into the node's cache, :mod:`.fetch`: a replica may run on a node that
does not share regserve's disk, and may not read regserve's data dir), the model is loaded the way
``mlflow models serve`` loads it and requests go through :class:`~.server.WorkerServer`'s
batcher (parse -> predict -> serialize, :mod:`.protocol`), so the answers (status, content
type, body) are those of a local worker. Like the rest of the worker package it imports only
the standard library, mlflow, numpy and pandas: it runs in the version's own environment,
and it does not import Ray (the backend wraps it in ``serve.deployment``).
"""

from __future__ import annotations

import logging
import sys
import time

from regserve.worker import protocol, wire
from regserve.worker.fetch import FileSource, fetch_files
from regserve.worker.limits import InputLimits
from regserve.worker.loading import load_model, mlflow_1_handler
from regserve.worker.server import WorkerServer, describe
from regserve.worker.text import log_safe

__all__ = ["ScoringReplica"]

_logger = logging.getLogger("regserve.worker")


class ScoringReplica:
    """Loads one version and answers ``(content type, body) -> (status, content type, body)``."""

    def __init__(
        self,
        model: str | dict[str, object],
        name: str,
        version: str,
        batching: str = "auto",
        max_batch_size: int = 64,
        max_batch_wait_ms: float = 0.0,
        logger_name: str = "regserve.worker",
        input_limits: dict[str, int] | None = None,
    ) -> None:
        # The backend names the logger Serve writes to the replica's log ("ray.serve").
        logger = logging.getLogger(logger_name)
        if not _has_handler(logger):
            logging.basicConfig(level=logging.INFO, stream=sys.stderr)
        started = time.monotonic()
        model_path = _model_path(model, logger)
        logger.info(
            "loading model %s:%s from %s", log_safe(name), log_safe(version), log_safe(model_path)
        )
        loaded = load_model(model_path)
        limits = InputLimits.from_json(input_limits)
        self._server = WorkerServer(
            loaded,
            name=name,
            version=version,
            batching=batching,
            max_batch_size=max_batch_size,
            max_batch_wait=max_batch_wait_ms / 1000,
            handler=mlflow_1_handler(loaded, limits),
            limits=limits,
        )
        logger.info(
            "model %s:%s loaded in %.2f s",
            log_safe(name),
            log_safe(version),
            time.monotonic() - started,
        )

    async def __call__(self, content_type: str | None, body: bytes) -> tuple[int, str, bytes]:
        try:
            response = await self._server.submit(content_type, body)
        except Exception as error:  # protocol.handle answers errors itself; a last resort
            _logger.exception("request handler failed")
            response = protocol.error_response(500, "INTERNAL_ERROR", type(error).__name__)
        return response.status, response.content_type, response.body

    def reconfigure(self, user_config: object) -> None:
        """Serve hands the deployment's ``user_config``: regserve's mark of who deployed it
        and from what, read back from Serve by the next regserve process to adopt the
        application (``backends/ray/adoption.py``). Nothing for the replica to do."""

    def describe(self) -> wire.Pong:
        """Who answers: pid, name, version, MLflow and Python versions (as a worker's PONG)."""
        return describe(self._server.name, self._server.version, self._server.state)

    def check_health(self) -> None:
        """Serve's health check: a replica whose model loaded is healthy."""
        if self._server.state != "ready":
            raise RuntimeError(f"replica is {self._server.state}")


def _model_path(model: str | dict[str, object], logger: logging.Logger) -> str:
    """The local directory of the version's files: ``model`` itself (a path), or where
    :func:`~.fetch.fetch_files` put them on this node (a :class:`~.fetch.FileSource`)."""
    if isinstance(model, str):
        return model
    source = FileSource.from_json(model)
    path, how = fetch_files(source)
    logger.info(
        "model files of %s:%s %s: %s",
        log_safe(source.model),
        log_safe(source.version),
        how,
        log_safe(str(path)),
    )
    return str(path)


def _has_handler(logger: logging.Logger) -> bool:
    return bool(logger.handlers or logging.getLogger().handlers)
