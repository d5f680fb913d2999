"""The iris demo model, registered through regserve's own MLflow API like a user would.

``ensure_demo_model`` runs the logging in a child process (``python -m
regserve.registry.demo``) so that MLflow's process-wide state (tracking URI, token, active
run) of the calling process is never touched.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from importlib.metadata import version
from typing import Any

from regserve.errors import RegServeError
from regserve.registry.models import ModelSnapshot

__all__ = [
    "DEMO_MODEL_NAME",
    "FLAVORS",
    "DemoModelError",
    "ensure_demo_model",
    "looks_complete",
]

DEMO_MODEL_NAME = "iris-classifier"
IRIS_COLUMNS = ("sepal_length", "sepal_width", "petal_length", "petal_width")
_STATE_TAG = "regserve.demo"  # "pending" while being built, "complete" once done
_EXPERIMENT = "regserve-demo"
_REQUIRED = ("mlflow", "cloudpickle", "numpy", "pandas", "scikit-learn", "scipy")
"""What the demo model needs, pinned from this interpreter's versions: MLflow's requirement
inference (a child process loading the model) took most of a version's registration."""
_REGISTRY_WAIT = 600.0
_SERIALIZATION = "cloudpickle"
"""MLflow 3 saves scikit-learn models with skops by default, whose import (most of
scikit-learn and SciPy) took 2.5 to 7 s here, in the registering process, then in the model's
warm process and in ``mlflow models serve``. The demo is regserve's own model, and a worker
loads it in its sandbox like any other."""
FLAVORS: dict[str, dict[str, object]] = {
    "python_function": {"loader_module": "mlflow.sklearn"},
    "sklearn": {"serialization_format": _SERIALIZATION},
}
"""The flavors the demo model's ``MLmodel`` names (what its warm process imports), known
before it is registered."""
_ONE_THREAD = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
"""Training two regressions on 150 rows with BLAS threads on a busy 2-core machine took 2.6 s
(the threads spin against each other); with one, 0.08 s."""


class DemoModelError(RegServeError):
    """Registering the demo model failed; the message carries the child's output."""


def ensure_demo_model(
    tracking_uri: str, token: str, *, timeout: float = 600.0, train_first: bool = False
) -> None:
    """Register ``iris-classifier`` through ``tracking_uri`` unless it is already there.

    Version 1 goes to Staging, version 2 to Production with the alias ``champion``. A model of
    that name made by someone else is left alone; a demo interrupted halfway is completed.
    Blocking: a first run takes several seconds. The child waits until ``tracking_uri``'s
    ``/health`` answers 200 (a starting regserve answers 503); ``train_first`` (a first start)
    imports scikit-learn and trains meanwhile.
    """
    # The child inherits this process's environment (PATH, proxies, TLS settings) minus
    # MLflow's own URI settings, which must come only from the arguments.
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("_MLFLOW_SERVER_")
        and key not in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")
    }
    env["MLFLOW_TRACKING_TOKEN"] = token
    for name in _ONE_THREAD:
        env.setdefault(name, "1")
    command = [sys.executable, "-m", "regserve.registry.demo", "--tracking-uri", tracking_uri]
    if train_first:
        command.append("--train-first")
    try:
        done = subprocess.run(
            command, env=env, capture_output=True, text=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise DemoModelError(f"registering the demo model took over {timeout:.0f} s") from exc
    if done.returncode != 0:
        output = (done.stderr or done.stdout)[-4000:]
        raise DemoModelError(f"registering the demo model failed:\n{output}")


def looks_complete(snapshot: ModelSnapshot | None) -> bool:
    """The demo as registered: version 1 in Staging, 2 in Production with the alias
    ``champion`` (a restart then needs no registering process at all). Versions added since
    (a user's, a benchmark's) do not make it incomplete: the registering process would find
    it complete and do nothing, after importing MLflow beside the restart."""
    if snapshot is None:
        return False
    stages = {v.version: v.stage for v in snapshot.versions}
    wanted = {"1": "Staging", "2": "Production"}
    return all(stages.get(v) == stage for v, stage in wanted.items()) and (
        snapshot.aliases.get("champion") == "2"
    )


def requirements() -> list[str]:
    """The demo model's pip requirements, pinned to the versions installed here."""
    return [f"{name}=={version(name)}" for name in _REQUIRED]


def _wait_for(tracking_uri: str) -> None:
    """Until the registry's ``/health`` answers 200; exits when the regserve that started this
    process is gone (stopped while it starts: nobody is left to wait for)."""
    deadline = time.monotonic() + _REGISTRY_WAIT
    parent = os.getppid()
    while True:
        if os.getppid() != parent:
            raise SystemExit("regserve stopped before its registry was ready")
        try:
            with urllib.request.urlopen(f"{tracking_uri}/health", timeout=5) as answer:
                if answer.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            if time.monotonic() > deadline:
                raise
        time.sleep(0.2)


def _register(tracking_uri: str, train_first: bool) -> None:
    """Runs in the child: converge the demo model to its described state."""
    import mlflow
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    models = _warmed(_train()) if train_first else None
    _wait_for(tracking_uri)
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)
    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    try:
        model = client.get_registered_model(DEMO_MODEL_NAME)
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
            raise
        client.create_registered_model(
            DEMO_MODEL_NAME,
            tags={_STATE_TAG: "pending"},
            description="Demo: logistic regression on the iris data set, made by regserve.",
        )
    else:
        if model.tags.get(_STATE_TAG) != "pending":
            return  # complete already, or not ours
    count = len(client.search_model_versions(f"name='{DEMO_MODEL_NAME}'"))
    models = models or _train()
    pinned = requirements()
    for c, model in list(models.items())[count:]:
        _log_version(c, model, pinned)
    client.transition_model_version_stage(DEMO_MODEL_NAME, "1", "Staging")
    client.transition_model_version_stage(DEMO_MODEL_NAME, "2", "Production")
    client.set_registered_model_alias(DEMO_MODEL_NAME, "champion", "2")
    client.set_registered_model_tag(DEMO_MODEL_NAME, _STATE_TAG, "complete")


def _train() -> dict[float, Any]:
    """Both versions' models (logistic regressions on iris, C=1.0 and C=0.5), by C."""
    import pandas as pd
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    data = load_iris()
    frame = pd.DataFrame(data.data, columns=list(IRIS_COLUMNS))
    return {c: LogisticRegression(max_iter=300, C=c).fit(frame, data.target) for c in (1.0, 0.5)}


def _warmed(models: dict[float, Any]) -> dict[float, Any]:
    """Save one model to a temporary directory, as logging will: the first save imports and
    indexes what MLflow's sklearn flavor needs (seconds), done here while the registry starts."""
    import tempfile

    import mlflow.sklearn

    model = next(iter(models.values()))
    example, signature = _example_and_signature(model)
    with tempfile.TemporaryDirectory() as tmp:
        mlflow.sklearn.save_model(
            model,
            f"{tmp}/model",
            signature=signature,
            input_example=example,
            pip_requirements=requirements(),
            serialization_format=_SERIALIZATION,
        )
    return models


def _example_and_signature(model: Any) -> tuple[Any, Any]:
    import pandas as pd
    from mlflow.models import infer_signature

    example = pd.DataFrame(
        [[5.1, 3.5, 1.4, 0.2], [4.9, 3.0, 1.4, 0.2], [4.7, 3.2, 1.3, 0.2]],
        columns=list(IRIS_COLUMNS),
    )
    return example, infer_signature(example, model.predict(example))


def _log_version(c: float, model: Any, pinned: list[str]) -> None:
    """Log and register one version, with its requirements given (none inferred)."""
    import mlflow

    example, signature = _example_and_signature(model)
    mlflow.set_experiment(_EXPERIMENT)
    with mlflow.start_run(run_name=f"iris-logreg-C{c}"):
        mlflow.log_param("C", c)
        mlflow.sklearn.log_model(
            model,
            name="model",
            signature=signature,
            input_example=example,
            pip_requirements=pinned,
            serialization_format=_SERIALIZATION,
            registered_model_name=DEMO_MODEL_NAME,
        )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Register regserve's iris demo model.")
    parser.add_argument("--tracking-uri", required=True)
    parser.add_argument("--train-first", action="store_true", help="train before the wait")
    args = parser.parse_args(argv)
    _register(args.tracking_uri, args.train_first)


if __name__ == "__main__":
    main()
