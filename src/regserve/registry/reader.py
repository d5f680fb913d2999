"""Reading the MLflow registry: snapshots of models, and downloads of version artifacts."""

from __future__ import annotations

import dataclasses
import re
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

from regserve.errors import InvalidParameterError, NotFoundError
from regserve.registry._sources import (
    ClientSource,
    RegistrySource,
    RestSource,
    RetryPolicy,
    translated_errors,
)
from regserve.registry.examples import MAX_EXAMPLE_BYTES, read_example
from regserve.registry.models import ModelSnapshot, VersionInfo

__all__ = ["ArtifactResolver", "RegistryReader", "local_artifacts_resolver", "name_filter"]

ArtifactResolver = Callable[[str], str]
"""Maps a version's artifact URI to one this process can read (identity by default)."""

_MLMODEL = "MLmodel"


def local_artifacts_resolver(artifacts_dir: Path) -> ArtifactResolver:
    """Map ``mlflow-artifacts:/<path>`` to ``<artifacts_dir>/<path>``; leave other URIs alone.

    A server started with ``--serve-artifacts`` hands out ``mlflow-artifacts:`` URIs that only
    an HTTP client can resolve; a reader sitting on that server's own database and disk reads
    the files directly instead.
    """
    root = artifacts_dir.resolve()

    def resolve(uri: str) -> str:
        parsed = urlparse(uri)
        if parsed.scheme != "mlflow-artifacts":
            return uri
        target = (root / parsed.path.lstrip("/")).resolve()
        if not target.is_relative_to(root):
            raise NotFoundError(f"artifact URI {uri!r} points outside the artifact store")
        return str(target)

    return resolve


def name_filter(name: str) -> str:
    """A model-version search filter matching ``name`` exactly, or a superset when needed.

    MLflow's filter grammar has no escape for quotes: a name with a single quote is written
    in double quotes; a name with both kinds is matched with LIKE (quotes as ``_``), and the
    caller keeps only exact matches.
    """
    if "'" not in name:
        return f"name='{name}'"
    if '"' not in name:
        return f'name="{name}"'
    pattern = name.replace("'", "_").replace('"', "_")
    return f"name LIKE '{pattern}'"


_OWNER_ID = re.compile(r"[A-Za-z0-9-]{1,64}")


class RegistryReader:
    """Blocking, read-only access to one MLflow registry; call it from a worker thread.

    ``registry_uri`` is an ``http(s)://`` MLflow server (auth through MLflow's own
    ``MLFLOW_TRACKING_TOKEN`` etc.) or a database URI (``sqlite:///...``,
    ``postgresql://...``). HTTP calls are bounded by ``http_timeout``, ``http_max_retries``
    and ``http_backoff_factor`` so an unreachable registry fails fast with
    :class:`RegistryUnavailableError`. ``page_size`` is the page length of searches. Every
    error raised is a ``regserve.errors`` type.
    """

    def __init__(
        self,
        registry_uri: str,
        *,
        tracking_uri: str | None = None,
        artifact_resolver: ArtifactResolver | None = None,
        http_timeout: float = 10.0,
        http_max_retries: int = 2,
        http_backoff_factor: float = 0.5,
        page_size: int = 1000,
    ) -> None:
        self.registry_uri = registry_uri
        self.tracking_uri = tracking_uri or registry_uri
        self._resolve: ArtifactResolver = artifact_resolver or (lambda uri: uri)
        self._source: RegistrySource
        if urlparse(registry_uri).scheme in ("http", "https"):
            policy = RetryPolicy(http_timeout, http_max_retries, http_backoff_factor)
            self._source = RestSource(registry_uri, policy, page_size)
        else:
            self._source = ClientSource(self.tracking_uri, registry_uri, page_size)

    def snapshot(self, name: str) -> ModelSnapshot | None:
        """The model and all its versions, or None when no such registered model exists."""
        with translated_errors(f"reading registered model {name!r}"):
            model = self._source.registered_model(name)
            if model is None:
                return None
            found = self._source.versions(name_filter(name))
        aliases, description, created_at = model
        versions = sorted(
            (_with_aliases(v, aliases) for v in found if v.name == name), key=_version_number
        )
        return ModelSnapshot(name, tuple(versions), aliases, description, created_at)

    def sources_naming(self, owner_id: str) -> list[tuple[str, str]]:
        """``(model name, source)`` of the versions whose source names ``owner_id`` (a run's
        or a logged model's id): what the hosted registry's artifact guard protects."""
        if not _OWNER_ID.fullmatch(owner_id):
            return []
        with translated_errors(f"finding the versions registered from {owner_id}"):
            found = self._source.versions(f"source_path LIKE '%{owner_id}%'")
        return [(v.name, v.source) for v in found]

    def artifact_root(self, kind: str, object_id: str) -> str | None:
        """The artifact URI of the run (``kind`` ``run``) or logged model (``logged_model``)
        ``object_id``, or None when there is none: where its files are, which is what the
        hosted registry's artifact guard needs to know."""
        if not _OWNER_ID.fullmatch(object_id):
            return None
        with translated_errors(f"reading the artifact location of {object_id}"):
            return self._source.artifact_root(kind, object_id)

    def list_models(self) -> list[str]:
        """Names of every registered model."""
        with translated_errors("listing registered models"):
            return sorted(self._source.model_names())

    def ping(self) -> None:
        """Return when the registry answers; raise RegistryUnavailableError otherwise."""
        with translated_errors(f"registry {self.registry_uri} is unavailable"):
            self._source.ping()

    def download(self, name: str, version: str, dest: Path) -> Path:
        """A local directory holding the MLmodel of ``name`` ``version``, downloaded once.

        The files land in a temporary directory beside ``dest`` that is renamed into place, so
        ``dest`` either holds a complete model or does not exist. A ``dest`` that already holds
        an MLmodel is returned as it is.
        """
        if (dest / _MLMODEL).is_file():
            return dest
        what = f"downloading {name!r} version {version}"
        with translated_errors(what):
            uri = self._resolve(self._source.download_uri(name, version))
            dest.parent.mkdir(parents=True, exist_ok=True)
            staging = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
            try:
                self._fetch(uri, staging)
                if not (staging / _MLMODEL).is_file():
                    raise NotFoundError(f"{what}: no MLmodel file at {uri}")
                return _move_into_place(staging, dest)
            finally:
                shutil.rmtree(staging, ignore_errors=True)

    def input_example(self, name: str, version: str) -> Any | None:
        """The version's logged input example as a scoring request body; None without one.

        Reads only the MLmodel and the example file, not the model's weights.
        """
        with translated_errors(f"reading the input example of {name!r} version {version}"):
            repo = self._repository(self._resolve(self._source.download_uri(name, version)))
            with tempfile.TemporaryDirectory(prefix="regserve-example-") as tmp:

                def read(relative: str) -> bytes:
                    local = Path(repo.download_artifacts(relative, dst_path=tmp))
                    if local.stat().st_size > MAX_EXAMPLE_BYTES:
                        raise InvalidParameterError(
                            f"{relative} of {name!r} version {version} is too large to show."
                        )
                    return local.read_bytes()

                return read_example(read, read(_MLMODEL).decode())

    def _repository(self, uri: str) -> Any:
        return get_artifact_repository(
            uri, tracking_uri=self.tracking_uri, registry_uri=self.registry_uri
        )

    def _fetch(self, uri: str, into: Path) -> None:
        self._repository(uri).download_artifacts("", dst_path=str(into))


def _move_into_place(staging: Path, dest: Path) -> Path:
    if dest.exists() and not (dest / _MLMODEL).is_file():
        shutil.rmtree(dest)  # an incomplete copy from an older layout or a crash
    try:
        staging.rename(dest)
    except OSError:
        # Another thread or process finished the same download first: keep theirs.
        if not (dest / _MLMODEL).is_file():
            raise
    return dest


def _with_aliases(version: VersionInfo, aliases: dict[str, str]) -> VersionInfo:
    # Version search leaves a version's aliases empty in some stores (SQL): take them from
    # the registered model, which every store reports.
    own = tuple(sorted(alias for alias, v in aliases.items() if v == version.version))
    return dataclasses.replace(version, aliases=own)


def _version_number(version: VersionInfo) -> int:
    return int(version.version)
