"""``python -m regserve.worker --socket PATH --model-path DIR [--name N --version V]
[--batching auto|on|off --max-batch-size N --max-batch-wait-ms MS] [--max-input-columns N
--max-input-rows N --max-input-values N --max-json-depth N] [--orphan-timeout S]``, or
``python -m regserve.worker --socket PATH --shared [--name N] [--orphan-timeout S]``, or
``python -m regserve.worker --template --socket CONTROL --model-path DIR [...]``, or
``python -m regserve.worker --warm --socket CONTROL --preload MODULE,... [...]``.

Loads the model, then listens on the Unix socket, and serves until SIGTERM or SIGINT. Its output
is the version's log: what it loads, how long that took, where it listens, and errors with
tracebacks (never request bodies). With ``--orphan-timeout S`` it stops by itself once no
connection has been open for S seconds: its supervisor is gone and nobody adopted it. With
``--shared`` it listens at once with no model and loads the versions it is told to
(:mod:`.shared`); its output is the shared worker's log, each line about one model naming its
version. With ``--template`` it loads the model and then, instead of serving, forks the
version's replicas on request (:mod:`.template`): each one serves within milliseconds. With
``--warm`` it loads no model: it imports the modules named by ``--preload`` and forks
templates on request (:mod:`.warm`), each of which then only loads its model.

Exit codes (:mod:`.exits`): 0 stopped cleanly; 2 bad arguments; 3 the model failed to load; 4
the socket could not be bound; 5 (``--template``, ``--warm``) the loaded model (the imported
libraries) is not safe to fork; 1 anything else.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import signal
import sys
import time
import traceback
from collections.abc import Callable
from functools import partial
from pathlib import Path

from regserve.worker.batcher import BATCHING_MODES
from regserve.worker.exits import (
    EXIT_FORK_UNSAFE,
    EXIT_MODEL_LOAD_FAILED,
    EXIT_OK,
    EXIT_SOCKET_FAILED,
)
from regserve.worker.limits import InputLimits
from regserve.worker.loading import load_model, mlflow_1_handler
from regserve.worker.orphan import watch_orphan
from regserve.worker.server import (
    DEFAULT_GRACE_SECONDS,
    DEFAULT_MAX_BATCH_SIZE,
    DEFAULT_MAX_BATCH_WAIT,
    DEFAULT_THREADS,
    WorkerServer,
)
from regserve.worker.shared import SharedServer
from regserve.worker.template import fork_hazard, serve_template
from regserve.worker.text import log_safe
from regserve.worker.warm import preload, prime, serve_warm

_logger = logging.getLogger("regserve.worker")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m regserve.worker", description=__doc__)
    parser.add_argument("--socket", required=True, type=Path, help="Unix socket to listen on")
    parser.add_argument("--model-path", help="local directory of the MLflow model")
    parser.add_argument(
        "--shared", action="store_true", help="host the versions loaded by LOAD frames"
    )
    parser.add_argument(
        "--template",
        action="store_true",
        help="load the model, then fork replicas on request on the --socket (control socket)",
    )
    parser.add_argument(
        "--warm",
        action="store_true",
        help="import the --preload modules, then fork templates on request on the --socket",
    )
    parser.add_argument(
        "--preload",
        default="",
        help="comma-separated modules a --warm process imports (mlflow.pyfunc,pandas,sklearn)",
    )
    parser.add_argument("--name", help="registered model name (reported in PONG)")
    parser.add_argument("--version", help="model version (reported in PONG)")
    parser.add_argument(
        "--threads", type=int, default=DEFAULT_THREADS, help="threads running predictions"
    )
    parser.add_argument(
        "--grace-seconds",
        type=float,
        default=DEFAULT_GRACE_SECONDS,
        help="how long a stop waits for in-flight requests",
    )
    parser.add_argument(
        "--batching",
        choices=BATCHING_MODES,
        default="auto",
        help="combine concurrent requests into one predict: auto (row-wise flavors), on, off",
    )
    parser.add_argument(
        "--max-batch-size", type=int, default=DEFAULT_MAX_BATCH_SIZE, help="requests per batch"
    )
    parser.add_argument(
        "--max-batch-wait-ms",
        type=float,
        default=DEFAULT_MAX_BATCH_WAIT * 1000,
        help="how long an idle worker holds a request back for others to join it",
    )
    InputLimits.add_arguments(parser)
    parser.add_argument(
        "--orphan-timeout",
        type=float,
        default=0.0,
        help="stop once no supervisor has been connected for this many seconds (0: never)",
    )
    parser.add_argument(
        "--peer-uid",
        type=int,
        default=None,
        help="accept connections only from this uid (and root): regserve's",
    )
    args = parser.parse_args(argv)
    if not (args.shared or args.warm) and args.model_path is None:
        parser.error("--model-path is required (unless --shared or --warm)")
    return args


async def run(
    server: WorkerServer | SharedServer, socket_path: Path, orphan_timeout: float = 0.0
) -> None:
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, server.stop)
    watch = asyncio.create_task(watch_orphan(orphan_timeout, server.connections, server.stop))
    try:
        await server.serve(socket_path)
    finally:
        watch.cancel()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        # The pid tells replicas apart: a version's replicas share its log file.
        format="%(asctime)s %(levelname)s %(name)s [pid %(process)d]: %(message)s",
    )
    if args.warm:
        return _warm(args)
    if args.shared:
        shared = SharedServer(
            args.name,
            threads=args.threads,
            grace_seconds=args.grace_seconds,
            peer_uid=args.peer_uid,
        )
        return _serve(shared, args.socket, args.orphan_timeout)
    _logger.info(
        "loading model %s:%s from %s",
        log_safe(args.name),
        log_safe(args.version),
        log_safe(args.model_path),
    )
    started = time.monotonic()
    try:
        model = load_model(args.model_path)
        make_server = partial(_worker_server, model, args)
        make_server()  # the settings are checked here, not in each forked replica
    except Exception:
        traceback.print_exc()
        _logger.error("model failed to load from %s", log_safe(args.model_path))
        return EXIT_MODEL_LOAD_FAILED
    _logger.info("model loaded in %.2f s", time.monotonic() - started)
    # MLflow, pandas and the model are a few hundred thousand objects that live as long as the
    # worker; a full collection walking them stalls every request for ~100 ms. Freeze them
    # (in a template this also keeps the collector from copying the pages its replicas share).
    gc.collect()
    gc.freeze()
    if args.template:
        hazard = fork_hazard()
        if hazard is not None:
            _logger.error(
                "template: this model is not safe to fork once loaded (%s); its "
                "replicas start as fresh workers",
                hazard,
            )
            return EXIT_FORK_UNSAFE
        return _serve_template(
            args.socket, partial(_serve_new, make_server), args.orphan_timeout, args.peer_uid
        )
    return _serve(make_server(), args.socket, args.orphan_timeout)


def _warm(args: argparse.Namespace) -> int:
    """``--warm``: import the libraries once, then fork templates from this process."""
    modules = [m for m in args.preload.split(",") if m]
    started = time.monotonic()
    preload(modules)
    prime()
    _logger.info(
        "warm process: %s imported in %.2f s", ", ".join(modules), time.monotonic() - started
    )
    gc.collect()
    gc.freeze()  # the pages its templates share stay shared (see main)
    hazard = fork_hazard()
    if hazard is not None:
        _logger.error(
            "warm process: not safe to fork once its libraries are imported (%s); templates "
            "start cold",
            hazard.replace("the model started threads while loading", "threads were started"),
        )
        return EXIT_FORK_UNSAFE
    try:
        return serve_warm(args.socket, main, args.orphan_timeout, args.peer_uid)
    except OSError:
        traceback.print_exc()
        _logger.error("cannot listen on %s", args.socket)
        return EXIT_SOCKET_FAILED


def _worker_server(model: object, args: argparse.Namespace) -> WorkerServer:
    limits = InputLimits.from_args(args)
    return WorkerServer(
        model,
        name=args.name,
        version=args.version,
        threads=args.threads,
        grace_seconds=args.grace_seconds,
        batching=args.batching,
        max_batch_size=args.max_batch_size,
        max_batch_wait=args.max_batch_wait_ms / 1000,
        handler=mlflow_1_handler(model, limits),
        limits=limits,
        peer_uid=args.peer_uid,
    )


def _serve_new(make_server: Callable[[], WorkerServer], socket_path: Path, orphan: float) -> int:
    return _serve(make_server(), socket_path, orphan)


def _serve_template(
    control: Path, serve: Callable[[Path, float], int], orphan: float, peer_uid: int | None
) -> int:
    try:
        return serve_template(control, serve, orphan, peer_uid)
    except OSError:
        traceback.print_exc()
        _logger.error("cannot listen on %s", control)
        return EXIT_SOCKET_FAILED


def _serve(server: WorkerServer | SharedServer, socket_path: Path, orphan_timeout: float) -> int:
    try:
        asyncio.run(run(server, socket_path, orphan_timeout))
    except OSError:
        traceback.print_exc()
        _logger.error("cannot listen on %s", socket_path)
        return EXIT_SOCKET_FAILED
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
