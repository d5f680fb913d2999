"""Where a local worker's socket, pid file and log live.

Sockets are in a directory per model (``<run dir>/<model digest>/``), owned by the model's own
user when workers are isolated (:mod:`regserve.sandbox`): its workers bind there, and no other
model's process can enter it. Pid files (worker records) stay in the run dir, regserve's own.
"""

from __future__ import annotations

import hashlib
import tempfile
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

__all__ = ["WorkerPaths", "log_dir_for", "run_dir_for", "socket_dir_for"]

# sun_path holds 108 bytes on Linux; keep a margin.
_MAX_SOCKET_PATH = 100


def log_dir_for(data_dir: Path, model_name: str) -> Path:
    """Where the logs of a model's versions and processes are."""
    return data_dir / "logs" / quote(model_name, safe="")


@dataclass(frozen=True)
class WorkerPaths:
    socket: Path
    pidfile: Path
    log: Path

    @classmethod
    def for_version(
        cls, data_dir: Path, model_name: str, version: str, replica: int = 1, generation: int = 0
    ) -> WorkerPaths:
        """A one-version worker's; every replica and cluster generation has its own socket and
        pid file (the first replica of the first generation keeps the original names), and
        they all append to the version's one log file."""
        key = f"{model_name}\0{version}"
        if replica != 1 or generation != 0:
            key += f"\0{generation}\0{replica}"
        digest = hashlib.sha1(key.encode()).hexdigest()[:12]
        run_dir = run_dir_for(data_dir)
        log = log_dir_for(data_dir, model_name) / f"{version}.log"
        sockets = socket_dir_for(run_dir, model_name)
        return cls(sockets / f"{digest}.sock", run_dir / f"{digest}.pid", log)

    @classmethod
    def for_template(
        cls, data_dir: Path, model_name: str, version: str, generation: int = 0
    ) -> WorkerPaths:
        """A version's template worker's (one per cluster generation): its control socket, its
        record (``<digest>.tpl``, not a ``*.pid``: worker adoption never takes it for a
        replica) and the version's log."""
        digest = hashlib.sha1(f"{model_name}\0{version}\0template\0{generation}".encode())
        paths = cls.for_version(data_dir, model_name, version)
        name = f"{digest.hexdigest()[:12]}.tpl"
        return cls(paths.socket.with_name(f"{name}.sock"), paths.pidfile.with_name(name), paths.log)

    @classmethod
    def for_warm(cls, data_dir: Path, model_name: str, environment: str) -> WorkerPaths:
        """A model's warm process for one environment (its interpreter): its control socket,
        its record (``<digest>.warm``, not a ``*.pid``: worker adoption never takes it for a
        worker) and its own log beside the versions' (``warm-<env digest>.log``)."""
        env_digest = hashlib.sha1(environment.encode()).hexdigest()[:10]
        digest = hashlib.sha1(f"{model_name}\0warm\0{environment}".encode()).hexdigest()[:12]
        run_dir = run_dir_for(data_dir)
        log = data_dir / "logs" / quote(model_name, safe="") / f"warm-{env_digest}.log"
        sockets = socket_dir_for(run_dir, model_name)
        return cls(sockets / f"{digest}.warm.sock", run_dir / f"{digest}.warm", log)

    @classmethod
    def for_shared(cls, data_dir: Path, model_name: str, environment: str) -> WorkerPaths:
        """A shared worker's: one per (model, environment); its log sits beside the versions'."""
        env_digest = hashlib.sha1(environment.encode()).hexdigest()[:10]
        digest = hashlib.sha1(f"{model_name}\0shared\0{environment}".encode()).hexdigest()[:12]
        run_dir = run_dir_for(data_dir)
        log = data_dir / "logs" / quote(model_name, safe="") / f"shared-{env_digest}.log"
        sockets = socket_dir_for(run_dir, model_name)
        return cls(sockets / f"{digest}.sock", run_dir / f"{digest}.pid", log)


def run_dir_for(data_dir: Path) -> Path:
    """The directory of sockets and pid files; a short one under /tmp when the data dir is deep."""
    run_dir = data_dir / "run"
    if len(str(run_dir)) + 31 > _MAX_SOCKET_PATH:  # "/<8>/<12>.tpl.sock"
        digest = hashlib.sha1(str(data_dir).encode()).hexdigest()[:10]
        run_dir = Path(tempfile.gettempdir()) / f"regserve-{digest}"
    return run_dir


def socket_dir_for(run_dir: Path, model_name: str) -> Path:
    """The directory of a model's sockets (its user's own when workers are isolated)."""
    return run_dir / hashlib.sha1(f"sockets\0{model_name}".encode()).hexdigest()[:8]
