"""The two ways the reader talks to a registry: MLflow's client (databases) or its REST API."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any, Protocol

import requests
import sqlalchemy.exc
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from mlflow.utils.credentials import get_default_host_creds
from mlflow.utils.rest_utils import http_request, verify_rest_response

from regserve.errors import (
    InvalidParameterError,
    NotFoundError,
    PermissionDeniedError,
    UnauthenticatedError,
)
from regserve.registry.errors import RegistryUnavailableError
from regserve.registry.models import VersionInfo

__all__ = ["ClientSource", "RegistrySource", "RestSource", "RetryPolicy", "translated_errors"]

_NOT_FOUND = "RESOURCE_DOES_NOT_EXIST"


class RegistrySource(Protocol):
    """What the reader needs from a registry; implementations raise MlflowException."""

    def registered_model(self, name: str) -> tuple[dict[str, str], str, int] | None:
        """(aliases, description, creation time in ms) of the model, or None when it does
        not exist."""

    def versions(self, filter_string: str) -> list[VersionInfo]:
        """Every version matching the filter, all pages."""

    def model_names(self) -> list[str]: ...

    def download_uri(self, name: str, version: str) -> str: ...

    def artifact_root(self, kind: str, object_id: str) -> str | None:
        """The artifact URI of a run (``kind`` ``run``) or logged model (``logged_model``),
        or None when there is no such thing."""

    def ping(self) -> None: ...


class RetryPolicy:
    """How long an HTTP registry call may take before the registry counts as unavailable."""

    def __init__(self, timeout: float, max_retries: int, backoff_factor: float) -> None:
        self.timeout = timeout
        self.max_retries = max_retries
        self.backoff_factor = backoff_factor


@contextlib.contextmanager
def translated_errors(what: str) -> Iterator[None]:
    """Turn MLflow, HTTP and database failures into regserve's typed errors."""
    try:
        yield
    except MlflowException as exc:
        code = exc.error_code
        if code == _NOT_FOUND:
            raise NotFoundError(f"{what}: {exc.message}") from exc
        if code in ("PERMISSION_DENIED", "FORBIDDEN"):
            raise PermissionDeniedError(f"{what}: {exc.message}") from exc
        if code in ("UNAUTHENTICATED", "CUSTOMER_UNAUTHORIZED"):
            raise UnauthenticatedError(f"{what}: {exc.message}") from exc
        if code == "INVALID_PARAMETER_VALUE":  # e.g. a name with ':' (found by schemathesis)
            raise InvalidParameterError(f"{what}: {exc.message}") from exc
        raise RegistryUnavailableError(f"{what}: {exc.message}") from exc
    except (OSError, requests.RequestException, sqlalchemy.exc.SQLAlchemyError) as exc:
        raise RegistryUnavailableError(f"{what}: {exc}") from exc


def _version_from_entity(mv: Any) -> VersionInfo:
    return VersionInfo(
        name=mv.name,
        version=str(mv.version),
        stage=mv.current_stage or "None",
        status=mv.status or "READY",
        aliases=tuple(mv.aliases or ()),
        source=mv.source or "",
        run_id=mv.run_id or None,
        creation_timestamp=int(mv.creation_timestamp or 0),
    )


def _version_from_json(mv: dict[str, Any]) -> VersionInfo:
    return VersionInfo(
        name=mv["name"],
        version=str(mv["version"]),
        stage=mv.get("current_stage") or "None",
        status=mv.get("status") or "READY",
        aliases=tuple(mv.get("aliases") or ()),
        source=mv.get("source") or "",
        run_id=mv.get("run_id") or None,
        creation_timestamp=int(mv.get("creation_timestamp") or 0),
    )


class ClientSource:
    """A registry reached through ``MlflowClient`` (database URIs, and anything not HTTP)."""

    def __init__(self, tracking_uri: str, registry_uri: str, page_size: int) -> None:
        self._page = page_size
        self._tracking_uri = tracking_uri
        self._registry_uri = registry_uri
        self._client: MlflowClient | None = None

    def _get(self) -> MlflowClient:
        # Built lazily: for a database URI the constructor connects (and may migrate).
        if self._client is None:
            self._client = MlflowClient(
                tracking_uri=self._tracking_uri, registry_uri=self._registry_uri
            )
        return self._client

    def registered_model(self, name: str) -> tuple[dict[str, str], str, int] | None:
        try:
            model = self._get().get_registered_model(name)
        except MlflowException as exc:
            if exc.error_code == _NOT_FOUND:
                return None
            raise
        aliases = {alias: str(version) for alias, version in (model.aliases or {}).items()}
        return aliases, model.description or "", int(model.creation_timestamp or 0)

    def versions(self, filter_string: str) -> list[VersionInfo]:
        found: list[VersionInfo] = []
        token: str | None = None
        while True:
            page = self._get().search_model_versions(
                filter_string, max_results=self._page, page_token=token
            )
            found.extend(_version_from_entity(mv) for mv in page)
            token = page.token
            if not token:
                return found

    def model_names(self) -> list[str]:
        names: list[str] = []
        token: str | None = None
        while True:
            page = self._get().search_registered_models(max_results=self._page, page_token=token)
            names.extend(model.name for model in page)
            token = page.token
            if not token:
                return names

    def download_uri(self, name: str, version: str) -> str:
        return str(self._get().get_model_version_download_uri(name, version))

    def artifact_root(self, kind: str, object_id: str) -> str | None:
        try:
            if kind == "run":
                return str(self._get().get_run(object_id).info.artifact_uri)
            return str(self._get().get_logged_model(object_id).artifact_location)
        except MlflowException as exc:
            if exc.error_code == _NOT_FOUND:
                return None
            raise

    def ping(self) -> None:
        self._get().search_registered_models(max_results=1)


class RestSource:
    """An MLflow server reached over its REST API with a bounded retry policy.

    MLflow's client reads its HTTP retry policy only from the environment
    (``MLFLOW_HTTP_REQUEST_MAX_RETRIES`` = 7, ``..._BACKOFF_FACTOR`` = 2,
    ``..._TIMEOUT`` = 120 s), so a dead server blocks each call for minutes. MLflow's
    ``http_request`` takes the same knobs as arguments, which is what this source uses; the
    credentials still come from MLflow itself (``MLFLOW_TRACKING_TOKEN`` and friends).
    """

    def __init__(self, uri: str, policy: RetryPolicy, page_size: int) -> None:
        self._page = page_size
        self._uri = uri
        self._policy = policy
        self._creds: Callable[[], Any] = lambda: get_default_host_creds(uri)  # type: ignore[no-untyped-call]

    def _get_json(self, endpoint: str, params: dict[str, Any]) -> dict[str, Any]:
        response = http_request(  # type: ignore[no-untyped-call]
            self._creds(),
            endpoint,
            "GET",
            max_retries=self._policy.max_retries,
            backoff_factor=self._policy.backoff_factor,
            timeout=self._policy.timeout,
            params=params,
        )
        body: dict[str, Any] = verify_rest_response(response, endpoint).json()
        return body

    def registered_model(self, name: str) -> tuple[dict[str, str], str, int] | None:
        try:
            body = self._get_json("/api/2.0/mlflow/registered-models/get", {"name": name})
        except MlflowException as exc:
            if exc.error_code == _NOT_FOUND:
                return None
            raise
        model = body.get("registered_model", {})
        aliases = {a["alias"]: str(a["version"]) for a in model.get("aliases", [])}
        created = int(model.get("creation_timestamp") or 0)
        return aliases, model.get("description") or "", created

    def versions(self, filter_string: str) -> list[VersionInfo]:
        found: list[VersionInfo] = []
        params: dict[str, Any] = {"filter": filter_string, "max_results": self._page}
        while True:
            body = self._get_json("/api/2.0/mlflow/model-versions/search", params)
            found.extend(_version_from_json(mv) for mv in body.get("model_versions", []))
            token = body.get("next_page_token")
            if not token:
                return found
            params = {**params, "page_token": token}

    def model_names(self) -> list[str]:
        names: list[str] = []
        params: dict[str, Any] = {"max_results": self._page}
        while True:
            body = self._get_json("/api/2.0/mlflow/registered-models/search", params)
            names.extend(m["name"] for m in body.get("registered_models", []))
            token = body.get("next_page_token")
            if not token:
                return names
            params = {**params, "page_token": token}

    def download_uri(self, name: str, version: str) -> str:
        body = self._get_json(
            "/api/2.0/mlflow/model-versions/get-download-uri", {"name": name, "version": version}
        )
        return str(body["artifact_uri"])

    def artifact_root(self, kind: str, object_id: str) -> str | None:
        try:
            if kind == "run":
                body = self._get_json("/api/2.0/mlflow/runs/get", {"run_id": object_id})
                return str(body["run"]["info"]["artifact_uri"])
            body = self._get_json(f"/api/2.0/mlflow/logged-models/{object_id}", {})
            return str(body["model"]["info"]["artifact_uri"])
        except MlflowException as exc:
            if exc.error_code == _NOT_FOUND:
                return None
            raise

    def ping(self) -> None:
        self._get_json("/api/2.0/mlflow/registered-models/search", {"max_results": 1})
