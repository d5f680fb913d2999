"""MLflow's own tracking and registry server, hosted inside regserve's process.

MLflow configures its server through ``_MLFLOW_SERVER_*`` environment variables that the
``mlflow server`` CLI normally sets for the uvicorn workers it spawns, and reads them at import
(host and CORS checks of ``mlflow.server``) or on first use (stores, artifact destination).
Hosting it in-process therefore means setting them here, in this one place, before
``mlflow.server`` is imported. MLflow also keeps its stores in module globals, so one process
hosts at most one registry: a second call for the same data dir returns the first result, a
call for another data dir is refused.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from regserve.errors import RegServeError
from regserve.registry.reader import RegistryReader, local_artifacts_resolver
from regserve.registry.schema import prepare_database
from regserve.sandbox.environ import ENVIRON_LOCK

__all__ = ["HostedRegistry", "HostedRegistryError", "create_hosted_registry"]

_ARTIFACT_ROOT = "mlflow-artifacts:/"
# Names from mlflow.server.constants, spelled out: importing that module would import
# mlflow.server itself, which reads the environment, before it is set.
_BACKEND_STORE_URI_ENV_VAR = "_MLFLOW_SERVER_FILE_STORE"
_REGISTRY_STORE_URI_ENV_VAR = "_MLFLOW_SERVER_REGISTRY_STORE"
_ARTIFACT_ROOT_ENV_VAR = "_MLFLOW_SERVER_ARTIFACT_ROOT"
_SERVE_ARTIFACTS_ENV_VAR = "_MLFLOW_SERVER_SERVE_ARTIFACTS"
_ARTIFACTS_DESTINATION_ENV_VAR = "_MLFLOW_SERVER_ARTIFACT_DESTINATION"
_LOOPBACK_HOSTS = (
    *("localhost", "127.0.0.1", "[::1]", "0.0.0.0"),
    *("localhost:*", "127.0.0.1:*", "[[]::1]:*", "0.0.0.0:*"),
)
# Webhooks: MLflow encrypts their secrets in its database with this Fernet key (a random one
# per process when unset, which makes the stored secrets unreadable after a restart), and
# delivers only to public https URLs unless told otherwise. regserve registers a webhook to
# itself on loopback (registry/webhooks.py); creating webhooks is for admins only (RegistryGuard).
_WEBHOOK_KEY_ENV_VAR = "MLFLOW_WEBHOOK_SECRET_ENCRYPTION_KEY"
_WEBHOOK_KEY_FILE = "mlflow-webhook-key"
_WEBHOOK_DELIVERY_ENV = {
    "MLFLOW_WEBHOOK_ALLOWED_SCHEMES": "http,https",
    "MLFLOW_WEBHOOK_ALLOW_PRIVATE_IPS": "true",
}
_lock = threading.Lock()
_hosted: HostedRegistry | None = None


class HostedRegistryError(RegServeError):
    """The hosted MLflow server cannot be set up as asked (e.g. a second data dir)."""


@dataclass(frozen=True)
class HostedRegistry:
    """The hosted MLflow server: its ASGI app, where it keeps things, and a reader on it."""

    app: Any
    """MLflow's FastAPI app (wrapping its Flask app); mount it as the fallback route."""
    reader: RegistryReader
    """Reads the server's database and artifact directory directly, no HTTP."""
    backend_store_uri: str
    artifacts_dir: Path
    data_dir: Path


def create_hosted_registry(
    data_dir: Path, *, allowed_hosts: Sequence[str] | None = None
) -> HostedRegistry:
    """Configure MLflow's server on ``data_dir``, create or migrate its database, build its app.

    Blocking (seconds: MLflow's server is imported; a fresh database is made from the prepared
    schema, ``schema.py``, or else by MLflow's migrations). ``allowed_hosts`` extends MLflow's
    Host-header check (default: localhost, 127.0.0.1 and private addresses, any port), e.g.
    with the public name regserve is reached by.
    """
    global _hosted
    data_dir = data_dir.expanduser().resolve()
    with _lock:
        if _hosted is not None:
            if _hosted.data_dir != data_dir:
                raise HostedRegistryError(
                    f"this process already hosts MLflow's server on {_hosted.data_dir}; "
                    f"MLflow keeps its stores in globals, so {data_dir} cannot be hosted too"
                )
            return _hosted
        with warnings.catch_warnings():
            # MLflow's server imports starlette's deprecated WSGI adapter; not ours to fix.
            warnings.filterwarnings("ignore", message=".*starlette.middleware.wsgi is deprecated")
            _hosted = _create(data_dir, allowed_hosts)
        return _hosted


def _create(data_dir: Path, allowed_hosts: Sequence[str] | None) -> HostedRegistry:
    artifacts_dir = data_dir / "artifacts"
    artifacts_dir.mkdir(parents=True, exist_ok=True)
    db_uri = f"sqlite:///{data_dir / 'mlflow.db'}"
    with ENVIRON_LOCK:  # not while a local Ray instance starts with the secrets hidden
        _configure_environment(db_uri, artifacts_dir, allowed_hosts)
        _configure_webhooks(data_dir)
    prepare_database(data_dir / "mlflow.db")  # a fresh data dir: no migrations to run
    _initialize_stores(db_uri)

    from mlflow.server.fastapi_app import create_fastapi_app

    reader = RegistryReader(
        db_uri, tracking_uri=db_uri, artifact_resolver=local_artifacts_resolver(artifacts_dir)
    )
    return HostedRegistry(create_fastapi_app(), reader, db_uri, artifacts_dir, data_dir)


def _configure_environment(
    db_uri: str, artifacts_dir: Path, allowed_hosts: Sequence[str] | None
) -> None:
    if "mlflow.server" in sys.modules and os.environ.get(_BACKEND_STORE_URI_ENV_VAR) != db_uri:
        # Its Host/CORS checks were already built from whatever the environment held then.
        raise HostedRegistryError(
            "mlflow.server was imported before regserve configured it; "
            "create the hosted registry before anything imports mlflow.server"
        )
    # The values `mlflow server --backend-store-uri sqlite:///... --serve-artifacts
    # --artifacts-destination <dir> --default-artifact-root mlflow-artifacts:/` would set.
    os.environ[_BACKEND_STORE_URI_ENV_VAR] = db_uri
    os.environ[_REGISTRY_STORE_URI_ENV_VAR] = db_uri
    os.environ[_ARTIFACT_ROOT_ENV_VAR] = _ARTIFACT_ROOT
    os.environ[_SERVE_ARTIFACTS_ENV_VAR] = "true"
    os.environ[_ARTIFACTS_DESTINATION_ENV_VAR] = str(artifacts_dir)
    if allowed_hosts:
        # Replaces MLflow's default list (loopback and private addresses, any port): keep
        # loopback so regserve's own demo logging and local clients still pass.
        hosts = [*_LOOPBACK_HOSTS, *allowed_hosts]
        os.environ["MLFLOW_SERVER_ALLOWED_HOSTS"] = ",".join(hosts)


def _configure_webhooks(data_dir: Path) -> None:
    if "mlflow.store.model_registry.dbmodels.models" in sys.modules and not os.environ.get(
        _WEBHOOK_KEY_ENV_VAR
    ):
        # Its EncryptedString column took a random key at import: webhook secrets stored now
        # are unreadable after a restart (regserve's own start-up never gets here).
        warnings.warn(
            "MLflow's registry tables were imported before regserve set the webhook secret "
            "key; webhook secrets will not survive a restart",
            RuntimeWarning,
            stacklevel=3,
        )
    if not os.environ.get(_WEBHOOK_KEY_ENV_VAR):
        os.environ[_WEBHOOK_KEY_ENV_VAR] = _webhook_key(data_dir / _WEBHOOK_KEY_FILE)
    for key, value in _WEBHOOK_DELIVERY_ENV.items():
        os.environ.setdefault(key, value)


def _webhook_key(path: Path) -> str:
    """The Fernet key kept 0600 in the data dir (made on first start)."""
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        pass
    from cryptography.fernet import Fernet

    key = Fernet.generate_key().decode("ascii")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(key + "\n")
    return key


def _initialize_stores(db_uri: str) -> None:
    """Create or migrate MLflow's tables, as ``mlflow server`` does before serving."""
    from mlflow.server.handlers import initialize_backend_stores

    # MLflow says "Creating initial MLflow database tables..." and "Updating database tables"
    # at INFO on regserve's console; the console says what regserve does (app.py).
    logging.getLogger("mlflow.store.db.utils").setLevel(logging.WARNING)

    # MLflow's server sets its process-wide tracking and registry URIs to the store (its
    # handlers rely on them) and also exports them as MLFLOW_TRACKING_URI / MLFLOW_REGISTRY_URI,
    # which every child process would inherit. Keep the in-memory globals, drop the exports.
    saved = {key: os.environ.get(key) for key in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")}
    initialize_backend_stores(db_uri, db_uri, _ARTIFACT_ROOT)
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
