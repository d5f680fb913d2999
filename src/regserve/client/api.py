"""``regserve.client.Client``: the control API and batch scoring from Python."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import orjson

from regserve.client.connection import resolve_connection
from regserve.client.errors import ClientError, ServingFailedError, WaitTimeoutError
from regserve.client.transport import RetryPolicy, Transport
from regserve.states import EndpointState, VersionState

if TYPE_CHECKING:  # pandas is imported when scoring starts: the CLI starts faster without it
    import pandas as pd

DEFAULT_MAX_PAYLOAD_BYTES = 16 * 1024 * 1024  # regserve's default REGSERVE_MAX_PAYLOAD_BYTES

__all__ = ["Client"]

_API = "/api/2.0/preview/mlflow/endpoints"
_TRAFFIC = "/api/2.0/regserve/endpoints/traffic"
_INFERENCE_READ = "/api/2.0/regserve/inference-tables/read"
_FINAL_VERSION_STATES = (VersionState.READY, VersionState.FAILED)


class Client:
    """A client of one regserve.

    ``host`` and ``token`` default to ``REGSERVE_HOST`` / ``REGSERVE_TOKEN``, then to the
    profile (``~/.regserve/profiles.ini``); see ``regserve.client.connection``. Every error
    answer is raised as a ``regserve.client.errors.ClientError`` subclass named after its
    ``error_code``.
    """

    def __init__(
        self,
        host: str | None = None,
        token: str | None = None,
        *,
        profile: str | None = None,
        timeout: float = 60.0,
        pool_size: int = 16,
    ) -> None:
        connection = resolve_connection(host, token, profile)
        self.url = connection.url
        self._transport = Transport(connection.url, connection.token, timeout, pool_size)

    def close(self) -> None:
        self._transport.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def request(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        """Any API call (``path`` from the root); its JSON answer or a typed error."""
        return self._transport.call(method, path, **kwargs)

    # -- serving control ---------------------------------------------------------------------

    def enable(self, model: str) -> None:
        self._transport.call("POST", f"{_API}/enable", json={"registered_model_name": model})

    def disable(self, model: str) -> None:
        self._transport.call("POST", f"{_API}/disable", json={"registered_model_name": model})

    def status(self, model: str) -> dict[str, Any]:
        """``endpoint_status``: state, state_message and cluster configs."""
        data = self._get("get-status", registered_model_name=model)
        return dict(data["endpoint_status"])

    def list_endpoints(self) -> list[dict[str, Any]]:
        return list(self._get("list").get("endpoints", []))

    def versions(self, model: str) -> list[dict[str, Any]]:
        """The served versions with ``state``, ``state_message`` and ``worker_pid``."""
        return list(self._get("list-versions", registered_model_name=model)["endpoint_versions"])

    def aliases(self, model: str) -> dict[str, str]:
        """Stage, ``latest`` and alias names -> the version each resolves to."""
        data = self._get("list-version-aliases", registered_model_name=model)
        return {a["alias"]: a["endpoint_version_name"] for a in data["aliases"]}

    def logs(self, model: str, version: str) -> str:
        body = {"registered_model_name": model, "endpoint_version_name": str(version)}
        return str(self._transport.call("POST", f"{_API}/get-version-logs", json=body)["logs"])

    def events(
        self, model: str, version: str | None = None, max_events: int = 500
    ) -> list[dict[str, Any]]:
        params: dict[str, Any] = {"registered_model_name": model, "max_events": max_events}
        if version is not None:
            params["endpoint_version_name"] = str(version)
        return list(self._get("get-event-history", **params)["events"])

    def metrics(self, model: str) -> list[dict[str, Any]]:
        return list(self._get("get-metric-history", registered_model_name=model)["metrics"])

    def cluster_config(self, model: str) -> dict[str, Any]:
        """The desired cluster config (the actual one while no change is pending)."""
        status = self.status(model)
        config = status.get("desired_cluster_config") or status.get("actual_cluster_config")
        return dict(config or {})

    def set_cluster_config(
        self, model: str, node_type_id: str, tags: Mapping[str, str] | None = None
    ) -> None:
        config = {
            "node_type_id": node_type_id,
            "tags": [{"key": k, "value": v} for k, v in (tags or {}).items()],
        }
        body = {"registered_model_name": model, "desired_cluster_config": config}
        self._transport.call("PUT", f"{_API}/update-cluster-config", json=body)

    def traffic(self, model: str) -> dict[str, Any]:
        """The traffic config of ``/model/{model}/invocations`` and where traffic goes now."""
        return self._transport.call("GET", _TRAFFIC, params={"registered_model_name": model})

    def set_traffic(
        self,
        model: str,
        routes: Mapping[str, int],
        shadow: tuple[str, int] | None = None,
    ) -> None:
        """Split ``/model/{model}/invocations``: ``routes`` maps refs to percents adding up to
        100 (empty: back to the default); ``shadow``: (ref, percent) mirrored, never returned."""
        body: dict[str, Any] = {
            "registered_model_name": model,
            "routes": [{"ref": ref, "percent": pct} for ref, pct in routes.items()],
            "shadow": {"ref": shadow[0], "percent": shadow[1]} if shadow else None,
        }
        self._transport.call("PUT", _TRAFFIC, json=body)

    def inference_table(
        self, model: str, since: str | None = None, limit: int = 100
    ) -> dict[str, Any]:
        """The newest ``limit`` rows of ``model``'s inference table (since ``since``: epoch
        ms or ISO 8601), newest first (CAN_MANAGE)."""
        params: dict[str, Any] = {"registered_model_name": model, "limit": limit}
        if since is not None:
            params["since"] = since
        return self._transport.call("GET", _INFERENCE_READ, params=params)

    def node_types(self) -> list[dict[str, Any]]:
        data = self._transport.call("GET", "/api/2.0/clusters/list-node-types")
        return list(data["node_types"])

    def wait(
        self,
        model: str,
        timeout: float = 600.0,
        interval: float = 1.0,
        on_update: Callable[[dict[str, Any], list[dict[str, Any]]], None] | None = None,
    ) -> dict[str, Any]:
        """Wait until serving ``model`` settled; its status once every version is READY.

        Raises ``ServingFailedError`` when the endpoint or a version ended FAILED and
        ``WaitTimeoutError`` when it did not settle within ``timeout`` seconds.
        """
        deadline = time.monotonic() + timeout
        while True:
            status, versions = self.status(model), self.versions(model)
            if on_update is not None:
                on_update(status, versions)
            served = {v["endpoint_version_name"] for v in versions}
            if _settled(status, versions) and self._registry_versions(model) <= served:
                return _final(model, status, versions)
            if time.monotonic() >= deadline:
                raise WaitTimeoutError(
                    f"serving '{model}' did not settle within {timeout:g} s: "
                    f"{status['state']}, {status.get('state_message', '')}"
                )
            time.sleep(interval)

    # -- scoring -----------------------------------------------------------------------------

    def predict(self, model: str, ref: str, payload: Any) -> dict[str, Any]:
        """One scoring request with any MLflow scoring payload (retried on 503 and 429)."""
        body = payload if isinstance(payload, bytes) else orjson.dumps(payload)
        return self._transport.post_with_retries(
            _scoring_path(model, ref), body, "application/json", RetryPolicy()
        )

    def score(
        self,
        data: Any,
        model: str,
        ref: str = "latest",
        *,
        batch_size: int = 256,
        concurrency: int = 4,
        max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES,
        columns: list[str] | None = None,
        params: dict[str, Any] | None = None,
        retry: RetryPolicy | None = None,
        on_progress: Callable[[int], None] | None = None,
    ) -> pd.DataFrame:
        """Predictions for every row of ``data`` (DataFrame, ndarray or list of dicts).

        An ndarray is sent as ``inputs`` (tensor models) unless ``columns`` names its columns.

        Returns a frame on ``data``'s index: a ``prediction`` column, or one column per output
        field for models that answer with records. ``on_progress(rows)`` is called as chunks
        finish, from worker threads.
        """
        from regserve.client.scoring import BatchScorer, predictions_frame, to_frame

        frame, as_array = to_frame(data, columns)
        scorer = BatchScorer(
            self._transport,
            _scoring_path(model, ref),
            batch_size,
            concurrency,
            max_payload_bytes,
            params,
            retry or RetryPolicy(),
            on_progress,
        )
        return predictions_frame(scorer.score(frame, as_array), frame.index)

    def _registry_versions(self, model: str) -> set[str]:
        """The versions regserve should serve, from the registry it hosts (empty: unknown).

        Until the controller's pass after ``enable`` has recorded them, list-versions can still
        be empty while the endpoint reads READY; this closes that gap. An external registry is
        not reachable here, and then the endpoint's own states decide alone.
        """
        quoted = model.replace("'", "\\'")
        try:
            data = self.request(
                "GET",
                "/api/2.0/mlflow/model-versions/search",
                params={"filter": f"name='{quoted}'", "max_results": 10000},
            )
        except ClientError:
            return set()
        return {
            str(v["version"])
            for v in data.get("model_versions", [])
            if v.get("status", "READY") == "READY" and v.get("current_stage") != "Archived"
        }

    def _get(self, route: str, **params: Any) -> dict[str, Any]:
        return self._transport.call("GET", f"{_API}/{route}", params=params)


def _scoring_path(model: str, ref: str) -> str:
    return f"/model/{quote(model, safe='')}/{quote(ref, safe='@')}/invocations"


def _settled(status: dict[str, Any], versions: list[dict[str, Any]]) -> bool:
    if status["state"] == EndpointState.FAILED:
        return True
    started = "actual_cluster_config" in status  # the controller's first pass has run
    return (
        started
        and status["state"] != EndpointState.PENDING
        and all(v["state"] in _FINAL_VERSION_STATES for v in versions)
    )


def _final(model: str, status: dict[str, Any], versions: list[dict[str, Any]]) -> dict[str, Any]:
    failed = [v["endpoint_version_name"] for v in versions if v["state"] == VersionState.FAILED]
    if status["state"] == EndpointState.FAILED or failed:
        names = ", ".join(f"v{v}" for v in failed)
        detail = f"failed versions: {names}. " if failed else ""
        raise ServingFailedError(f"serving '{model}': {detail}{status.get('state_message', '')}")
    return status
