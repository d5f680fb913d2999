"""What a version's Ray replicas fetch their model files with (``worker/fetch.py``).

A replica may run on any node of the cluster, which need not share a disk with regserve, and
it runs the model's code, which must not read regserve's data dir. So the backend does not
give it the path of regserve's copy (``<data-dir>/models/...``) but a :class:`FileSource`:
the gateway's URL, a credential that reads this version's files and nothing else
(``auth/file_grants.py``), the files' fingerprint (which names the node's cache entry and
checks the download), and the node's cache dir.

The fingerprint reads every file once; regserve's copy of a version never changes (its
folder is named for the version's creation, ``controller/model_files.py``), so it is computed
once per folder and kept.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

from regserve.backends.base import VersionSpec
from regserve.errors import RegServeError
from regserve.settings import Settings
from regserve.worker.fetch import FileSource, files_fingerprint

__all__ = ["FileSigner", "ReplicaFiles", "gateway_url"]

FileSigner = Callable[[str, str, str], str]
"""(model, version, folder of its files under ``<data-dir>/models``) -> the credential that
reads them (``auth/file_grants.py::FileGrants.issue``, handed in by ``app.py``)."""

_EVERY_ADDRESS = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}


def gateway_url(settings: Settings) -> str:
    """``REGSERVE_RAY_GATEWAY_URL``, else this gateway's own address."""
    if settings.ray_gateway_url:
        return settings.ray_gateway_url.rstrip("/")
    host = _EVERY_ADDRESS.get(settings.host, settings.host)
    return f"http://{f'[{host}]' if ':' in host else host}:{settings.port}"


class ReplicaFiles:
    """Makes each version's :class:`FileSource` (blocking: it may read the files)."""

    def __init__(self, settings: Settings, sign: FileSigner) -> None:
        self._models_dir = settings.resolved_data_dir() / "models"
        self._sign = sign
        self._url = gateway_url(settings)
        self._cache_dir = settings.ray_model_cache or ""
        self._fingerprints: dict[Path, str] = {}
        self._lock = threading.Lock()

    def source(self, spec: VersionSpec) -> FileSource:
        """Raises RegServeError when the version's files are not in regserve's models dir."""
        path = spec.model_path
        try:
            folder = path.resolve().relative_to(self._models_dir.resolve()).as_posix()
        except ValueError:
            raise RegServeError(
                f"The files of version {spec.version} of '{spec.model_name}' are not in "
                "regserve's models directory, so its replicas cannot fetch them."
            ) from None
        return FileSource(
            self._url,
            self._sign(spec.model_name, spec.version, folder),
            spec.model_name,
            spec.version,
            self._fingerprint(path),
            self._cache_dir,
        )

    def _fingerprint(self, path: Path) -> str:
        with self._lock:
            known = self._fingerprints.get(path)
        if known is not None:
            return known
        if not (path / "MLmodel").is_file():
            raise RegServeError(f"regserve's copy of the model has no MLmodel file ({path.name}).")
        found = files_fingerprint(path)
        with self._lock:
            self._fingerprints[path] = found
        return found
