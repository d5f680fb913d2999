"""The Ray instance regserve runs on: one it starts itself, or a cluster it connects to.

Without an address regserve starts a single-node Ray bound to 127.0.0.1 (no dashboard, a
small object store, its session and logs under ``<data-dir>/ray``) and shuts it down on exit.
With ``--ray-address`` it connects as a driver and leaves the cluster running on exit. Serve
is started with no HTTP proxy: the gateway calls deployments through handles. Every method
blocks; the backend calls them from a thread.

Shipping regserve's package: the replicas of a cluster regserve did not start (and of a
version with an environment of its own) import ``regserve.worker`` from regserve's package
sent through Ray (``py_modules``), not from what a node has installed. Serve keeps an
application's config as JSON and accepts only remote URIs there (a local path passes
``serve.run`` and then breaks ``serve.status()`` for every application on the cluster), so
the package is uploaded once, as this driver's job ``runtime_env`` (Ray uploads it to the
cluster's GCS, keyed by its content), and each deployment names the uploaded URI
(:func:`shipped_package`).
"""

from __future__ import annotations

import hashlib
import logging
import os
import signal
import sys
import tempfile
import threading
from pathlib import Path

import regserve
from regserve.sandbox.environ import hidden_secrets

__all__ = [
    "NAMESPACE",
    "RayCluster",
    "connect_driver",
    "prepare_ray_auth",
    "reclaim_signals",
    "shipped_package",
]

_log = logging.getLogger("regserve.ray")

NAMESPACE = "regserve"
_OBJECT_STORE_BYTES = 128 * 1024 * 1024
# Ray puts Unix sockets under its temp dir (".../session_<date>_<pid>/sockets/plasma_store");
# past ~107 bytes a socket path cannot be bound, so a long data dir gets a short temp dir.
_MAX_TEMP_DIR_CHARS = 40
_START_ATTEMPTS = 3
# A process is one Ray driver at most (ray.init is process-wide): a follower gateway connects in
# the background from the start, and if it is elected meanwhile, its backend must wait for
# that connection and use it rather than call ray.init a second time. Reentrant: connect()
# holds it while it calls connect_driver().
_DRIVER_LOCK = threading.RLock()


class RayCluster:
    """Connects to (or starts) Ray and Serve; says where Ray's logs are."""

    def __init__(self, address: str | None, data_dir: Path, ship_package: bool = False) -> None:
        """``ship_package``: send regserve's package to a Ray instance started here too (its
        replicas run in environments of their own); a cluster connected to always gets it."""
        prepare_ray_auth()
        self.address = address
        self._data_dir = data_dir
        self._ship_package = ship_package
        self.started_here = False

    def temp_dir(self) -> Path:
        preferred = self._data_dir / "ray"
        if len(str(preferred)) <= _MAX_TEMP_DIR_CHARS:
            return preferred
        digest = hashlib.sha256(str(self._data_dir).encode()).hexdigest()[:10]
        return Path(tempfile.gettempdir()) / f"regserve-ray-{digest}"

    def connect(self) -> None:
        import ray
        from ray import serve

        with _DRIVER_LOCK:  # a follower's connection may be under way: see _DRIVER_LOCK
            if ray.is_initialized():  # a follower gateway, connected to the leader's cluster
                _log.info("leading on the Ray cluster this gateway is connected to already")
            elif self.address:
                _log.info("connecting to the Ray cluster at %s", self.address)
                connect_driver(self.address)
            else:
                self._start_local()
        serve.start(proxy_location="Disabled")

    def _start_local(self) -> None:
        import ray

        temp_dir = self.temp_dir()
        temp_dir.mkdir(parents=True, exist_ok=True)
        for attempt in range(1, _START_ATTEMPTS + 1):
            _log.info("starting a local Ray instance on 127.0.0.1 (session in %s)", temp_dir)
            try:
                # Ray's node processes start the replicas (model code): with none of our secrets.
                with hidden_secrets():
                    ray.init(
                        address="local",
                        namespace=NAMESPACE,
                        include_dashboard=False,
                        _node_ip_address="127.0.0.1",
                        object_store_memory=_OBJECT_STORE_BYTES,
                        _temp_dir=str(temp_dir),
                        log_to_driver=False,
                        configure_logging=False,
                        runtime_env=_package_env() if self._ship_package else None,
                    )
            except Exception as exc:
                # Ray gives its raylet a fixed 30 s to register; a busy machine can miss that.
                # What the failed start left behind would only compete with the next one.
                _kill_processes_under(temp_dir)
                if attempt == _START_ATTEMPTS:
                    raise
                _log.warning(
                    "Ray did not start (%s); trying again (%d of %d)",
                    exc,
                    attempt + 1,
                    _START_ATTEMPTS,
                )
                continue
            self.started_here = True
            return

    def shutdown(self) -> None:
        """Disconnect; a Ray instance regserve started is stopped with it."""
        import ray

        if ray.is_initialized():
            ray.shutdown()
        if self.started_here:
            _kill_processes_under(self.temp_dir())  # any straggler of our own instance

    def logs_dir(self) -> Path | None:
        """This node's Ray session log directory (None when not known)."""
        try:
            from ray._private import worker

            node = worker._global_node
            return Path(node.get_logs_dir_path()) if node is not None else None
        except (ImportError, AttributeError):
            return None


def prepare_ray_auth() -> None:
    """Choose Ray's token authentication when a token is at hand; call before Ray is imported.

    A Ray cluster started by ``ray.init()`` on this machine (as regserve does without an
    address) turns token authentication on and keeps the token in ``~/.ray/auth_token``, but a
    driver connecting to an existing cluster sends the token only in token mode, which Ray
    reads from ``RAY_AUTH_MODE`` when it is imported. So with no ``RAY_AUTH_MODE`` set and a
    token at hand (``RAY_AUTH_TOKEN``, ``RAY_AUTH_TOKEN_PATH`` or that file), token mode is
    chosen. An explicit ``RAY_AUTH_MODE`` always wins, and once Ray is imported nothing is
    changed: Ray has read its mode, and the processes it starts must agree with it.
    """
    if "ray" in sys.modules:
        return
    if "RAY_AUTH_MODE" not in os.environ and _ray_token_available():
        os.environ["RAY_AUTH_MODE"] = "token"


def connect_driver(address: str) -> None:
    """Connect this process to the Ray cluster at ``address`` as a driver, shipping regserve's
    package (see the module doc); nothing when it is connected already."""
    import ray

    with _DRIVER_LOCK:
        if ray.is_initialized():
            return
        ray.init(
            address=address,
            namespace=NAMESPACE,
            log_to_driver=False,
            configure_logging=False,
            runtime_env=_package_env(),
        )


def shipped_package() -> list[str]:
    """The URIs of regserve's package as uploaded to the connected cluster (``gcs://...``),
    for a deployment's ``py_modules``; empty when it was not shipped (replicas import the
    regserve installed with Ray)."""
    import ray

    if not ray.is_initialized():
        return []
    return [str(uri) for uri in ray.get_runtime_context().runtime_env.py_modules()]


def _package_env() -> dict[str, list[str]]:
    # A path: Ray uploads it and puts the uploaded URI in the job's runtime_env.
    return {"py_modules": [str(Path(regserve.__file__).parent)]}


def _ray_token_available() -> bool:
    if os.environ.get("RAY_AUTH_TOKEN"):
        return True
    path = os.environ.get("RAY_AUTH_TOKEN_PATH") or str(Path.home() / ".ray" / "auth_token")
    return Path(path).is_file()


def _kill_processes_under(temp_dir: Path) -> None:
    """SIGKILL the processes of the Ray instance whose session is in ``temp_dir`` (Ray names
    its session directory on every process's command line); Linux only, else nothing."""
    needle = str(temp_dir).encode()
    proc = Path("/proc")
    if not proc.is_dir():
        return
    for entry in proc.iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if needle in (entry / "cmdline").read_bytes():
                os.kill(int(entry.name), signal.SIGKILL)
        except (OSError, ProcessLookupError):
            continue


def reclaim_signals() -> None:
    """Give SIGTERM and SIGINT back to the handlers regserve installed (call on the main
    thread once Ray is connected). Ray's driver sets a C-level handler for SIGTERM that logs
    a stack and ends the process at once, which would skip the graceful shutdown (drain the
    gateway, delete the applications, stop Ray). Python still knows its own handlers:
    setting them again puts them back at the C level."""
    if threading.current_thread() is not threading.main_thread():
        return
    for signum in (signal.SIGTERM, signal.SIGINT):
        handler = signal.getsignal(signum)
        if handler is not None:
            signal.signal(signum, handler)
