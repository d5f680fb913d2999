"""The environment a worker (or an environment build) gets: an allow-list, never regserve's own.

regserve's environment holds what its workers must never see (``REGSERVE_ADMIN_TOKEN``,
``MLFLOW_TRACKING_TOKEN``, a store URI with a password, cloud credentials), so a worker's is
built from nothing:

- the variables every program expects: ``PATH`` (the environment's ``bin`` first, then the
  system's), ``HOME`` and ``TMPDIR`` (the model's own directories), ``USER``/``LOGNAME``,
  ``LANG``, ``LC_*``, ``TZ`` when regserve has them;
- ``PYTHONUNBUFFERED`` (the log is written as it happens) and ``PYTHONDONTWRITEBYTECODE``
  when regserve has it (a worker cannot write into its read-only environment anyway);
- the names an administrator lists in ``REGSERVE_WORKER_ENV`` (e.g. ``OMP_NUM_THREADS``,
  ``HF_HUB_OFFLINE``), for every model, except names that look like regserve's or a secret's;
- the model's own variables: the file ``<model-env dir>/<model>.env`` (``KEY=VALUE`` lines,
  ``#`` comments), which only an administrator can write, read at each worker start. This is
  how a model gets credentials of its own, never the server's.
"""

from __future__ import annotations

import contextlib
import os
import re
import threading
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from urllib.parse import quote

__all__ = [
    "ENVIRON_LOCK",
    "ModelEnvError",
    "for_builds",
    "hidden_secrets",
    "installer_environment",
    "model_env_file",
    "read_model_env",
    "refused_name",
    "worker_environment",
]

_SYSTEM_PATH = "/usr/local/bin:/usr/bin:/bin"
_COPIED = ("LANG", "LANGUAGE", "TZ", "PYTHONDONTWRITEBYTECODE")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_REFUSED_PREFIXES = ("REGSERVE_", "_MLFLOW_SERVER", "MLFLOW_WEBHOOK", "LD_", "PYTHON")
_REFUSED_NAMES = (
    "MLFLOW_TRACKING_TOKEN",
    "MLFLOW_TRACKING_PASSWORD",
    "MLFLOW_TRACKING_USERNAME",
    "MLFLOW_TRACKING_URI",
    "MLFLOW_REGISTRY_URI",
    "DATABRICKS_TOKEN",
    "LISTEN_FDS",
    "LISTEN_PID",
    "PATH",
    "HOME",
    "TMPDIR",
    "USER",
    "LOGNAME",
)


class ModelEnvError(ValueError):
    """A model's env file cannot be used; the message says which line and why."""


def refused_name(name: str) -> str | None:
    """Why ``name`` may not be given to a worker by configuration, or None when it may."""
    if not _NAME.match(name):
        return "not a variable name"
    if name.upper().startswith(_REFUSED_PREFIXES) or name.upper() in _REFUSED_NAMES:
        return "regserve sets it, or it holds the server's own configuration or secrets"
    return None


def worker_environment(
    *,
    home: Path,
    user: str,
    bin_dir: Path | None,
    pythonpath: Path | None,
    passed: Iterable[str],
    model_env: Mapping[str, str],
    source: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The whole environment of a worker (see the module's docstring)."""
    parent = os.environ if source is None else source
    env = {k: v for k, v in parent.items() if k in _COPIED or k.startswith("LC_")}
    env.update({name: parent[name] for name in passed if name in parent and not refused_name(name)})
    env.update(model_env)
    env["PATH"] = f"{bin_dir}:{_SYSTEM_PATH}" if bin_dir is not None else _SYSTEM_PATH
    env["HOME"] = str(home)
    env["TMPDIR"] = str(home / "tmp")
    env["USER"] = env["LOGNAME"] = user
    env["PYTHONUNBUFFERED"] = "1"
    if pythonpath is not None:
        env["PYTHONPATH"] = str(pythonpath)  # the worker package only, not regserve's deps
    return env


_INSTALLER_KEPT = ("PATH", "HOME")
_INSTALLER_PREFIXES = ("UV_", "SSL_CERT_", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "ALL_PROXY")


def installer_environment(source: Mapping[str, str] | None = None) -> dict[str, str]:
    """What uv runs with: regserve's environment less its secrets and server configuration
    (uv itself is trusted; a package's build code never runs with this, see ``for_builds``)."""
    parent = os.environ if source is None else source
    return {k: v for k, v in parent.items() if k in _INSTALLER_KEPT or not refused_name(k)}


def for_builds(source: Mapping[str, str] | None = None) -> dict[str, str]:
    """The installer's own settings (index, proxy, certificates) from regserve's environment,
    for a build as the unprivileged builder (whose packages' build code sees them)."""
    parent = os.environ if source is None else source
    return {k: v for k, v in parent.items() if k.upper().startswith(_INSTALLER_PREFIXES)}


_SECRET_PREFIXES = ("REGSERVE_", "_MLFLOW_SERVER", "MLFLOW_WEBHOOK")

ENVIRON_LOCK = threading.RLock()
"""Held while regserve changes ``os.environ`` once running (the hosted registry's
configuration) and for the whole of :func:`hidden_secrets`: no thread puts a secret back into
the environment while another starts processes from it with the secrets hidden."""
_SECRET_NAMES = ("MLFLOW_TRACKING_TOKEN", "MLFLOW_TRACKING_PASSWORD", "DATABRICKS_TOKEN")


@contextlib.contextmanager
def hidden_secrets() -> Iterator[list[str]]:
    """regserve's secrets and server configuration out of ``os.environ`` meanwhile, for a
    library that starts long-lived processes from it (Ray's node processes, which start the
    replicas); they are put back after. Yields the names hidden.

    Other threads read the environment meanwhile (MLflow's server reads its configuration
    from it on some requests), so regserve calls this before the hosted registry configures
    itself (``RegServe.start_registry`` waits for the backend's start), and holds
    :data:`ENVIRON_LOCK` throughout."""
    with ENVIRON_LOCK:
        hidden = {
            k: v
            for k, v in os.environ.items()
            if k.upper().startswith(_SECRET_PREFIXES) or k.upper() in _SECRET_NAMES
        }
        for name in hidden:
            os.environ.pop(name, None)
        try:
            yield sorted(hidden)
        finally:
            os.environ.update(hidden)


def model_env_file(env_dir: Path, model_name: str) -> Path:
    return env_dir / f"{quote(model_name, safe='')}.env"


def read_model_env(env_dir: Path, model_name: str) -> dict[str, str]:
    """The model's own variables (empty without a file); ModelEnvError for a bad line."""
    path = model_env_file(env_dir, model_name)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    values: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, value = line.removeprefix("export ").partition("=")
        name = name.strip()
        why = "expected KEY=VALUE" if not sep else refused_name(name)
        if why:
            raise ModelEnvError(f"{path.name} line {number}: {name or line!r}: {why}")
        values[name] = _unquote(value.strip())
    return values


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        return value[1:-1]
    return value
