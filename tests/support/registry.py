"""Driving a registry the way a user does: plain MLflow against regserve's hosted server."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import mlflow
import pytest
from mlflow import MlflowClient

from tests.support.models import log_iris_version
from tests.support.server import ADMIN_TOKEN, RegServeProcess


class UserRegistry:
    """Logs, promotes, aliases and archives versions through MLflow's own client."""

    def __init__(self, url: str) -> None:
        self.client = MlflowClient(tracking_uri=url, registry_uri=url)

    def register(self, name: str, c: float = 1.0) -> str:
        return log_iris_version(name, c)

    def stage(self, name: str, version: str, stage: str) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # stages are deprecated, still used
            self.client.transition_model_version_stage(name, version, stage)

    def alias(self, name: str, alias: str, version: str) -> None:
        self.client.set_registered_model_alias(name, alias, version)


@contextmanager
def user_registry(monkeypatch: pytest.MonkeyPatch, url: str, token: str) -> Iterator[UserRegistry]:
    """MLFLOW_TRACKING_URI / MLFLOW_TRACKING_TOKEN pointed at regserve, as the README says."""
    # MLflow exports the URIs it is given to the environment; monkeypatch restores it.
    monkeypatch.setenv("MLFLOW_TRACKING_URI", url)
    monkeypatch.setenv("MLFLOW_REGISTRY_URI", url)
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", token)
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(url)
    mlflow.set_registry_uri(url)
    mlflow.set_experiment(experiment_id="0")  # "Default": every MLflow server has it
    try:
        yield UserRegistry(url)
    finally:
        mlflow.set_tracking_uri(previous)
        mlflow.set_registry_uri("")  # back to "follow the tracking URI"


def one_version_served(data_dir: Path, model: str) -> Iterator[RegServeProcess]:
    """A ``regserve up`` serving version 1 of ``model`` (READY), stopped afterwards: the module
    fixture of the tests that throw requests at one served version (``yield from``)."""
    server = RegServeProcess(data_dir).start()
    with pytest.MonkeyPatch.context() as mp, user_registry(mp, server.url, ADMIN_TOKEN) as reg:
        reg.register(model)
    assert server.enable(model).status_code == 200
    server.wait_version_state(model, "1", "VERSION_STATE_READY")
    yield server
    server.close()
