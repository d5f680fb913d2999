"""Registering the prepared demo model through MLflow's REST API, with MLflow's own REST stores.

The stores take their credentials from a function (here: the admin token given), not from
MLflow's process-wide tracking URI and environment, so the gateway process, which hosts
MLflow's server and already imported MLflow, registers the demo itself: no child process
importing MLflow again beside the registry and the model's warm process.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from urllib.parse import quote

from mlflow.entities import Param, RunStatus
from mlflow.entities.model_registry import RegisteredModelTag
from mlflow.exceptions import MlflowException
from mlflow.store.model_registry.rest_store import RestStore as RegistryStore
from mlflow.store.tracking.rest_store import RestStore as TrackingStore
from mlflow.utils.rest_utils import MlflowHostCreds, http_request, verify_rest_response

from regserve.registry.demo import DEMO_MODEL_NAME, DemoModelError

__all__ = ["DemoRegistry"]

_mlflow: Any = SimpleNamespace(
    Tag=RegisteredModelTag,
    Param=Param,
    TrackingStore=TrackingStore,
    RegistryStore=RegistryStore,
    http_request=http_request,
    verify=verify_rest_response,
    Creds=MlflowHostCreds,
)
"""MLflow's REST stores and entities, which carry no type annotations."""

_PROXIED = "mlflow-artifacts:/"
_ARTIFACTS_API = "/api/2.0/mlflow-artifacts/artifacts/"


class DemoRegistry:
    """The demo's registered model in the registry at ``tracking_uri``, as ``token``."""

    def __init__(self, tracking_uri: str, token: str) -> None:
        self._creds = _mlflow.Creds(tracking_uri, token=token or None)
        self._tracking = _mlflow.TrackingStore(lambda: self._creds)
        self._registry = _mlflow.RegistryStore(lambda: self._creds)

    def converge(
        self, versions: Sequence[tuple[float, Path]], state_tag: str, experiment: str
    ) -> None:
        """Create the model (marked ``pending``), log the versions it lacks, then set its
        stages and alias and mark it ``complete``. A model of that name not marked pending is
        complete already or someone else's: left alone."""
        try:
            model = self._registry.get_registered_model(DEMO_MODEL_NAME)
        except MlflowException as exc:
            if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
                raise
            self._registry.create_registered_model(
                DEMO_MODEL_NAME,
                tags=[_mlflow.Tag(state_tag, "pending")],
                description="Demo: logistic regression on the iris data set, made by regserve.",
            )
        else:
            if model.tags.get(state_tag) != "pending":
                return
        count = len(self._registry.search_model_versions(f"name='{DEMO_MODEL_NAME}'"))
        experiment_id = self._experiment(experiment)
        for c, saved in versions[count:]:
            self._log_version(experiment_id, c, saved)
        self._registry.transition_model_version_stage(DEMO_MODEL_NAME, "1", "Staging", False)
        self._registry.transition_model_version_stage(DEMO_MODEL_NAME, "2", "Production", False)
        self._registry.set_registered_model_alias(DEMO_MODEL_NAME, "champion", "2")
        self._registry.set_registered_model_tag(DEMO_MODEL_NAME, _mlflow.Tag(state_tag, "complete"))

    def _experiment(self, name: str) -> str:
        found = self._tracking.get_experiment_by_name(name)
        return str(found.experiment_id if found else self._tracking.create_experiment(name))

    def _log_version(self, experiment_id: str, c: float, saved: Path) -> None:
        """A run whose ``model`` artifacts are the saved files, and a version made from them."""
        now = int(time.time() * 1000)
        run = self._tracking.create_run(experiment_id, None, now, [], f"iris-logreg-C{c}")
        run_id = run.info.run_id
        self._tracking.log_param(run_id, _mlflow.Param("C", str(c)))
        source = f"{run.info.artifact_uri}/model"
        self._upload(source, saved)
        self._registry.create_model_version(DEMO_MODEL_NAME, source, run_id=run_id)
        end = int(time.time() * 1000)
        self._tracking.update_run_info(run_id, RunStatus.FINISHED, end, None)

    def _upload(self, artifact_uri: str, saved: Path) -> None:
        """Each file under ``saved`` to ``artifact_uri``, through the server's artifact proxy."""
        if not artifact_uri.startswith(_PROXIED):
            raise DemoModelError(
                f"the registry keeps artifacts at {artifact_uri}, not behind its server: the "
                "demo needs a registry that serves artifacts (mlflow server --serve-artifacts)"
            )
        base = artifact_uri.removeprefix(_PROXIED).strip("/")
        for path in sorted(p for p in saved.rglob("*") if p.is_file()):
            endpoint = _ARTIFACTS_API + quote(f"{base}/{path.relative_to(saved).as_posix()}")
            with path.open("rb") as body:
                answer = _mlflow.http_request(self._creds, endpoint, "PUT", data=body)
            _mlflow.verify(answer, endpoint)
