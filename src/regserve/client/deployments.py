"""The MLflow deployments plugin: ``mlflow deployments ... -t regserve`` and
``mlflow.deployments.get_deploy_client("regserve")``.

A deployment is the serving of one registered model: its name is the model's name, and it
serves every active version (``models:/NAME``, ``models:/NAME/2`` and ``models:/NAME@alias``
all name the model NAME). Targets: ``regserve`` (host and token as the ``regserve`` command
finds them: ``REGSERVE_HOST``/``REGSERVE_TOKEN`` or the profile) or ``regserve:/http://host:port``.
``predict`` takes ``NAME`` (the latest version) or ``NAME/REF`` (a version, stage or alias).

Config (``-C key=value``): ``wait`` (``true``: create blocks until READY), ``timeout``
(seconds), ``node_type_id`` and ``tag.KEY`` (the serving cluster).

What ``mlflow deployments predict --input-path FILE`` reads: :data:`TARGET_HELP`.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from typing import Any

import numpy as np
import orjson
import pandas as pd
from mlflow.deployments import BaseDeploymentClient, PredictionsResponse
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import ErrorCode

from regserve.client.api import Client
from regserve.client.connection import resolve_connection
from regserve.client.errors import BadRequestError, ClientError, NotFoundError

__all__ = ["TARGET_HELP", "RegServeDeploymentClient", "run_local", "target_help"]

_MODEL_URI = re.compile(r"^models:/(?P<name>[^/@]+)(?:[/@].*)?$")
_MLFLOW_CODES = frozenset(ErrorCode.keys())
_SCORING_KEYS = {"dataframe_split", "dataframe_records", "instances", "inputs"}


TARGET_HELP = """\
Target: regserve (host and token as the `regserve` command finds them: REGSERVE_HOST and
REGSERVE_TOKEN, or ~/.regserve/profiles.ini) or regserve:/http://HOST:PORT.

A deployment is the serving of one registered model, named after it: create enables serving
every active version of -m models:/NAME and waits until they are READY; delete disables it.
Config (-C key=value): wait (true: create blocks until READY), timeout (seconds, 600),
node_type_id and tag.KEY (the serving cluster, e.g. -C tag.regserve.replicas=2).

predict --name NAME (the latest version) or NAME/REF (a version, stage or alias, e.g.
iris-classifier/Production) --input-path FILE. FILE is JSON (MLflow reads it with
pandas.read_json, whatever its name: a CSV file is not read), either rows:

  [{"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}]
  {"sepal_length": [5.1, 6.7], "sepal_width": [3.5, 3.0], ...}        (columns)

or one body of MLflow's scoring protocol, as curl would send it to /invocations:

  {"dataframe_records": [{"sepal_length": 5.1, "sepal_width": 3.5, ...}]}
  {"dataframe_split": {"columns": ["sepal_length", ...], "data": [[5.1, ...]]}}
  {"inputs": [[5.1, 3.5, 1.4, 0.2]]}                 (or "instances": tensor input)

Example:

  echo '[{"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4,
          "petal_width": 0.2}]' > rows.json
  mlflow deployments predict -t regserve:/http://127.0.0.1:8080 \\
      --name iris-classifier/Production --input-path rows.json
  # {"predictions": [0]}

--output-path writes the predictions to a file. params: from Python only,
get_deploy_client("regserve").predict(NAME, frame, params={...}).
"""
"""What ``mlflow deployments help -t regserve`` prints."""


def target_help() -> str:
    return TARGET_HELP


def run_local(
    target: str, name: str, model_uri: str, flavor: str | None = None, config: Any = None
) -> None:
    raise MlflowException(
        "regserve serves from a registry: start it with `regserve up` (add --registry-uri to "
        "serve from an existing MLflow server), then `mlflow deployments create -t regserve "
        f"--name {name} -m {model_uri}`.",
        error_code=ErrorCode.Value("INVALID_PARAMETER_VALUE"),
    )


class RegServeDeploymentClient(BaseDeploymentClient):
    """Deployments on one regserve; errors are ``MlflowException`` with regserve's error_code."""

    def __init__(self, target_uri: str) -> None:
        super().__init__(target_uri)  # type: ignore[no-untyped-call]
        # "regserve" -> resolved like the CLI; "regserve:/http://h:p" or "regserve://h:p" -> h:p
        host = target_uri.removeprefix("regserve").removeprefix(":").lstrip("/")
        self._host = host or None
        self._url = resolve_connection(self._host).url

    def create_deployment(
        self,
        name: str,
        model_uri: str,
        flavor: str | None = None,
        config: dict[str, Any] | None = None,
        endpoint: str | None = None,
    ) -> dict[str, Any]:
        _check(name, model_uri, flavor)
        config = config or {}
        with self._session() as client:
            if any(e["registered_model_name"] == name for e in client.list_endpoints()):
                raise MlflowException(
                    f"Deployment '{name}' already exists.",
                    error_code=ErrorCode.Value("RESOURCE_ALREADY_EXISTS"),
                )
            client.enable(name)
            _apply_cluster(client, name, config)
            if _true(config.get("wait", True)):
                client.wait(name, timeout=float(config.get("timeout", 600)))
        return self.get_deployment(name)

    def update_deployment(
        self,
        name: str,
        model_uri: str | None = None,
        flavor: str | None = None,
        config: dict[str, Any] | None = None,
        endpoint: str | None = None,
    ) -> dict[str, Any]:
        if model_uri is not None:
            _check(name, model_uri, flavor)
        with self._session() as client:
            _apply_cluster(client, name, config or {})
        return self.get_deployment(name)

    def delete_deployment(
        self, name: str, config: dict[str, Any] | None = None, endpoint: str | None = None
    ) -> None:
        # Not served (any more): deleting is idempotent.
        with self._session() as client, contextlib.suppress(BadRequestError, NotFoundError):
            client.disable(name)

    def list_deployments(self, endpoint: str | None = None) -> list[dict[str, Any]]:
        with self._session() as client:
            return [_named(e) for e in client.list_endpoints()]

    def get_deployment(self, name: str, endpoint: str | None = None) -> dict[str, Any]:
        with self._session() as client:
            try:
                status = client.status(name)
            except BadRequestError as exc:  # "serving is not enabled"
                raise NotFoundError(exc.message, "RESOURCE_DOES_NOT_EXIST", 404) from exc
            versions = client.versions(name)
            refs = client.aliases(name)
        return {
            **_named(status),
            "flavor": "python_function",
            "versions": versions,
            "refs": refs,
            "url": f"{self._url}/model/{name}/latest/invocations",
        }

    def predict(
        self,
        deployment_name: str | None = None,
        inputs: Any = None,
        endpoint: str | None = None,
        params: dict[str, Any] | None = None,
    ) -> PredictionsResponse:
        if not deployment_name:
            raise MlflowException("predict needs a deployment name (NAME or NAME/REF)")
        model, _, ref = deployment_name.partition("/")
        payload = _payload(inputs)
        if params:
            payload["params"] = params
        with self._session() as client:
            answer = client.predict(model, ref or "latest", payload)
        return PredictionsResponse(answer)

    @contextlib.contextmanager
    def _session(self) -> Iterator[Client]:
        """A client for one operation (closed after it); its errors as ``MlflowException``."""
        try:
            with Client(self._host) as client:
                yield client
        except ClientError as exc:
            code = exc.error_code if exc.error_code in _MLFLOW_CODES else "INTERNAL_ERROR"
            raise MlflowException(exc.message, error_code=ErrorCode.Value(code)) from exc


def _apply_cluster(client: Client, name: str, config: dict[str, Any]) -> None:
    tags = {k.removeprefix("tag."): str(v) for k, v in config.items() if k.startswith("tag.")}
    if "node_type_id" in config or tags:
        current = client.cluster_config(name).get("node_type_id", "local-default")
        client.set_cluster_config(name, str(config.get("node_type_id", current)), tags)


def _check(name: str, model_uri: str, flavor: str | None) -> None:
    match = _MODEL_URI.match(model_uri)
    if match is None or match["name"] != name:
        raise MlflowException(
            f"regserve deploys registered models: the model URI must be models:/{name}[/REF], "
            f"got '{model_uri}' (a deployment's name is its registered model's name).",
            error_code=ErrorCode.Value("INVALID_PARAMETER_VALUE"),
        )
    if flavor not in (None, "python_function"):
        raise MlflowException(
            f"regserve serves the python_function flavor, not '{flavor}'.",
            error_code=ErrorCode.Value("INVALID_PARAMETER_VALUE"),
        )


def _named(status: dict[str, Any]) -> dict[str, Any]:
    return {"name": status["registered_model_name"], **status}


def _true(value: Any) -> bool:
    return str(value).strip().lower() not in ("false", "0", "no", "off")


def _payload(inputs: Any) -> dict[str, Any]:
    """MLflow's scoring body for what ``mlflow pyfunc predict`` takes."""
    if isinstance(inputs, pd.DataFrame):
        body = _scoring_body(inputs)
        if body is not None:
            return body
        split = orjson.loads(inputs.to_json(orient="split", index=False, date_format="iso"))
        return {"dataframe_split": split}
    if isinstance(inputs, np.ndarray):
        return {"inputs": inputs.tolist()}
    if isinstance(inputs, dict) and _SCORING_KEYS & set(inputs):
        return dict(inputs)
    if isinstance(inputs, list) and all(isinstance(r, dict) for r in inputs):
        return {"dataframe_records": inputs}
    return {"inputs": inputs}


def _scoring_body(frame: pd.DataFrame) -> dict[str, Any] | None:
    """The scoring body a file held, when ``mlflow deployments predict`` read one (it reads
    ``--input-path`` with ``pandas.read_json``: ``{"dataframe_records": [...]}`` arrives as a
    frame of one column of that name); None for a frame of rows."""
    if len(frame.columns) != 1 or frame.columns[0] not in _SCORING_KEYS:
        return None
    column = frame[frame.columns[0]]
    if isinstance(column.index, pd.RangeIndex):  # a list: records, instances, inputs
        return {str(column.name): column.tolist()}
    return {str(column.name): column.to_dict()}  # an object: dataframe_split, named inputs
