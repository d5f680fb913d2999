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

from regserve.errors import RegServeError

__all__ = ["DEMO_MODEL_NAME", "DemoModelError", "ensure_demo_model"]

DEMO_MODEL_NAME = "iris-classifier"
IRIS_COLUMNS = ("sepal_length", "sepal_width", "petal_length", "petal_width")
_STATE_TAG = "regserve.demo"  # "pending" while being built, "complete" once done
_EXPERIMENT = "regserve-demo"


class DemoModelError(RegServeError):
    """Registering the demo model failed; the message carries the child's output."""


def ensure_demo_model(tracking_uri: str, token: str, *, timeout: float = 600.0) -> None:
    """Register ``iris-classifier`` through ``tracking_uri`` unless it is already there.

    Version 1 goes to Staging, version 2 to Production with the alias ``champion``. A model of
    that name made by someone else is left alone; a demo interrupted halfway is completed.
    Blocking: a first run takes several seconds.
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
    command = [sys.executable, "-m", "regserve.registry.demo", "--tracking-uri", tracking_uri]
    try:
        done = subprocess.run(
            command, env=env, capture_output=True, text=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise DemoModelError(f"registering the demo model took over {timeout:.0f} s") from exc
    if done.returncode != 0:
        output = (done.stderr or done.stdout)[-4000:]
        raise DemoModelError(f"registering the demo model failed:\n{output}")


def _register(tracking_uri: str) -> None:
    """Runs in the child: converge the demo model to its described state."""
    import mlflow
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

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
    requirements: str | None = None
    for c in (1.0, 0.5)[count:]:
        requirements = _log_version(c, requirements)
    client.transition_model_version_stage(DEMO_MODEL_NAME, "1", "Staging")
    client.transition_model_version_stage(DEMO_MODEL_NAME, "2", "Production")
    client.set_registered_model_alias(DEMO_MODEL_NAME, "champion", "2")
    client.set_registered_model_tag(DEMO_MODEL_NAME, _STATE_TAG, "complete")


def _log_version(c: float, requirements: str | None) -> str:
    """Log and register one version; returns its requirements.txt for the next one.

    Inferring requirements (a child process importing the model) is most of a log's time;
    both versions have the same, so the second reuses the first's.
    """
    import mlflow
    import pandas as pd
    from mlflow.models import infer_signature
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    data = load_iris()
    frame = pd.DataFrame(data.data, columns=list(IRIS_COLUMNS))
    model = LogisticRegression(max_iter=300, C=c).fit(frame, data.target)
    example = frame.head(3)
    signature = infer_signature(example, model.predict(example))
    mlflow.set_experiment(_EXPERIMENT)
    with mlflow.start_run(run_name=f"iris-logreg-C{c}"):
        mlflow.log_param("C", c)
        info = mlflow.sklearn.log_model(
            model,
            name="model",
            signature=signature,
            input_example=example,
            pip_requirements=requirements,
            registered_model_name=DEMO_MODEL_NAME,
        )
    location = mlflow.get_logged_model(info.model_id).artifact_location
    return str(mlflow.artifacts.download_artifacts(f"{location}/requirements.txt"))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Register regserve's iris demo model.")
    parser.add_argument("--tracking-uri", required=True)
    args = parser.parse_args(argv)
    _register(args.tracking_uri)


if __name__ == "__main__":
    main()
