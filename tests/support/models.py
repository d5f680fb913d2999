"""Tiny real models for tests, trained on scikit-learn's bundled iris data (no download)."""

from __future__ import annotations

import sys
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
from mlflow.models import infer_signature
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

IRIS_COLUMNS = ["sepal_length", "sepal_width", "petal_length", "petal_width"]

# MLflow infers a model's pip requirements by loading it in a child process, on every save and
# log: about 6 s each, far more on a loaded machine, and the suite logs dozens of models. What
# it infers depends on the kind of model, not on its weights or name: each kind is inferred
# once (by a default save) and later models of that kind are given that same list, so every
# model still carries exactly the requirements files a default log would write.
_INFERRED: dict[str, list[str]] = {}


def _inferred_requirements(kind: str, save: Callable[[str], object]) -> list[str]:
    """The pip requirements MLflow infers for ``kind``; ``save`` saves one such model to a path."""
    if kind not in _INFERRED:
        with tempfile.TemporaryDirectory() as tmp:
            save(f"{tmp}/model")
            lines = Path(tmp, "model", "requirements.txt").read_text().splitlines()
        _INFERRED[kind] = [line for line in lines if line.strip()]
    return list(_INFERRED[kind])


def iris_frame() -> tuple[pd.DataFrame, Any]:
    data = load_iris()
    frame = pd.DataFrame(data.data, columns=IRIS_COLUMNS)
    return frame, data.target


def train_iris(c: float = 1.0) -> tuple[LogisticRegression, pd.DataFrame]:
    frame, target = iris_frame()
    model = LogisticRegression(max_iter=300, C=c).fit(frame, target)
    return model, frame


def save_iris_model(path: Path, c: float = 1.0) -> Path:
    """Save a signed iris LogisticRegression with an input example, as MLflow logs by default."""
    model, frame = train_iris(c)
    example = frame.head(3)
    signature = infer_signature(example, model.predict(example))
    mlflow.sklearn.save_model(
        model,
        str(path),
        signature=signature,
        input_example=example,
        pip_requirements=_iris_requirements(model, signature, example),
    )
    return path


def _iris_requirements(model: Any, signature: Any, example: pd.DataFrame) -> list[str]:
    def save(path: str) -> None:
        mlflow.sklearn.save_model(model, path, signature=signature, input_example=example)

    return _inferred_requirements("iris", save)


def iris_requirements() -> list[str]:
    """The pip requirements MLflow infers for an iris model (inferred once per process); a child
    process that logs iris versions can be given them (``log_iris_version``'s ``requirements``)."""
    model, frame = train_iris()
    example = frame.head(3)
    return _iris_requirements(model, infer_signature(example, model.predict(example)), example)


def log_iris_version(name: str, c: float = 1.0, requirements: list[str] | None = None) -> str:
    """Log and register one iris version against the current tracking URI; returns its version.

    ``requirements``: what ``iris_requirements()`` returned, when known (inferred otherwise)."""
    model, frame = train_iris(c)
    example = frame.head(3)
    signature = infer_signature(example, model.predict(example))
    with mlflow.start_run():
        info = mlflow.sklearn.log_model(
            model,
            name="model",
            signature=signature,
            input_example=example,
            pip_requirements=requirements or _iris_requirements(model, signature, example),
            registered_model_name=name,
        )
    return str(info.registered_model_version)


def _pyfunc_requirements(kind: str, model: Any, **save_kwargs: Any) -> list[str]:
    def save(path: str) -> None:
        mlflow.pyfunc.save_model(path, python_model=model, **save_kwargs)

    return _inferred_requirements(kind, save)


def log_sleepy_version(name: str, seconds: float) -> str:
    """Register a pyfunc that sleeps ``seconds`` per request, then echoes the row count."""
    import time

    class Sleepy(mlflow.pyfunc.PythonModel):  # defined here so cloudpickle ships it by value
        # No type hints: MLflow would read them as the model's signature.
        def predict(self, context, model_input, params=None):  # type: ignore[no-untyped-def]
            time.sleep(seconds)
            return [len(model_input)] * len(model_input)

    frame, _ = iris_frame()
    with mlflow.start_run(), warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "add type hints": deliberately none
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=Sleepy(),
            input_example=frame.head(1),
            pip_requirements=_pyfunc_requirements("sleepy", Sleepy(), input_example=frame.head(1)),
            registered_model_name=name,
        )
    return str(info.registered_model_version)


def log_constant_version(name: str, answer: str) -> str:
    """Register a pyfunc answering ``answer`` for every row: versions told apart by their
    predictions, not only by the header that names them."""

    class Constant(mlflow.pyfunc.PythonModel):  # defined here so cloudpickle ships it by value
        def predict(self, context, model_input, params=None):  # type: ignore[no-untyped-def]
            return [answer] * len(model_input)

    frame, _ = iris_frame()
    with mlflow.start_run(), warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "add type hints": deliberately none
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=Constant(),
            input_example=frame.head(1),
            pip_requirements=_pyfunc_requirements(
                "constant", Constant(), input_example=frame.head(1)
            ),
            registered_model_name=name,
        )
    return str(info.registered_model_version)


def log_slow_loading_version(name: str, seconds: float) -> str:
    """Register a pyfunc that takes ``seconds`` to load (a large model's weights, say), then
    echoes the row count: its version stays starting that long, warm start or not."""
    import time

    class SlowLoading(mlflow.pyfunc.PythonModel):  # defined here so cloudpickle ships it by value
        def load_context(self, context):  # type: ignore[no-untyped-def]
            time.sleep(seconds)

        def predict(self, context, model_input, params=None):  # type: ignore[no-untyped-def]
            return [len(model_input)] * len(model_input)

    with mlflow.start_run(), warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "add type hints": deliberately none
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=SlowLoading(),
            registered_model_name=name,
            pip_requirements=_pyfunc_requirements("slow-loading", SlowLoading()),
        )
    return str(info.registered_model_version)


def log_broken_version(name: str) -> str:
    """Register a pyfunc whose loading always fails, with a recognisable message."""

    class Broken(mlflow.pyfunc.PythonModel):  # defined here so cloudpickle ships it by value
        def load_context(self, context):  # type: ignore[no-untyped-def]
            raise RuntimeError("deliberately broken model: cannot load weights.bin")

        def predict(self, context, model_input, params=None):  # type: ignore[no-untyped-def]
            return model_input

    with mlflow.start_run(), warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "add type hints": deliberately none
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=Broken(),
            registered_model_name=name,
            pip_requirements=_pyfunc_requirements("broken", Broken()),
        )
    return str(info.registered_model_version)


def _threaded_model() -> Any:
    """A pyfunc that starts a thread of its own when loaded (``model-refresher``, as a model
    that reloads a lookup table would): not safe to fork once loaded. Answers the row count."""
    import threading
    import time

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "add type hints": deliberately none

        class Threaded(mlflow.pyfunc.PythonModel):  # defined here: cloudpickle ships it by value
            def load_context(self, context):  # type: ignore[no-untyped-def]
                def refresh() -> None:
                    while True:
                        time.sleep(3600)

                threading.Thread(target=refresh, name="model-refresher", daemon=True).start()

            def predict(self, context, model_input, params=None):  # type: ignore[no-untyped-def]
                return [len(model_input)] * len(model_input)

    return Threaded()


def save_threaded_model(path: Path) -> Path:
    """Save the pyfunc that starts a thread when loaded (see ``_threaded_model``)."""
    model = _threaded_model()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        requirements = _pyfunc_requirements("threaded", model)
        mlflow.pyfunc.save_model(str(path), python_model=model, pip_requirements=requirements)
    return path


def log_threaded_version(name: str) -> str:
    """Log and register the pyfunc that starts a thread when loaded; returns its version."""
    model = _threaded_model()
    frame, _ = iris_frame()
    with mlflow.start_run(), warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=model,
            input_example=frame.head(1),
            pip_requirements=_pyfunc_requirements("threaded", model),
            registered_model_name=name,
        )
    return str(info.registered_model_version)


def log_version_reporter(
    name: str, requirements: list[str], conda_channels: list[str] | None = None
) -> str:
    """Register a pyfunc answering, per row, the scikit-learn and MLflow versions it runs with."""

    class Reporter(mlflow.pyfunc.PythonModel):  # defined here so cloudpickle ships it by value
        def predict(self, context, model_input, params=None):  # type: ignore[no-untyped-def]
            import mlflow as runtime_mlflow
            import sklearn

            return [f"sklearn={sklearn.__version__} mlflow={runtime_mlflow.__version__}"] * len(
                model_input
            )

    frame, _ = iris_frame()
    with mlflow.start_run(), warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "add type hints": deliberately none
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=Reporter(),
            input_example=frame.head(1),
            **_environment(requirements, conda_channels),
            registered_model_name=name,
        )
    return str(info.registered_model_version)


def _environment(requirements: list[str], conda_channels: list[str] | None) -> dict[str, Any]:
    if conda_channels is None:
        return {"pip_requirements": requirements}
    python = ".".join(map(str, sys.version_info[:3]))
    conda_env = {
        "channels": conda_channels,
        "dependencies": [f"python={python}", "pip", {"pip": requirements}],
    }
    return {"conda_env": conda_env}


def _row_id_model() -> tuple[Any, Any, pd.DataFrame]:
    """A pyfunc whose output names its input row: ``{"id", "y": x * scale}`` per row.

    A row with a negative id poisons its request (predict raises), and ``scale`` is a param.
    """
    import numpy as np

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "add type hints": deliberately none

        class RowId(mlflow.pyfunc.PythonModel):  # defined here: cloudpickle ships it by value
            def predict(self, context, model_input, params=None):  # type: ignore[no-untyped-def]
                if (model_input["id"] < 0).any():
                    raise ValueError("negative ids are poison")
                scale = (params or {}).get("scale", 1.0)
                return pd.DataFrame({"id": model_input["id"], "y": model_input["x"] * scale})

    example = pd.DataFrame({"id": np.array([1, 2], dtype="int64"), "x": [0.5, 1.5]})
    signature = infer_signature(example, example.rename(columns={"x": "y"}), {"scale": 1.0})
    return RowId(), signature, example


def save_row_id_model(path: Path) -> Path:
    """Save the row-id pyfunc (see ``_row_id_model``) to a directory."""
    model, signature, example = _row_id_model()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        requirements = _pyfunc_requirements(
            "row-id", model, signature=signature, input_example=example
        )
        mlflow.pyfunc.save_model(
            str(path),
            python_model=model,
            signature=signature,
            input_example=example,
            pip_requirements=requirements,
        )
    return path


def log_row_id_version(name: str) -> str:
    """Log and register the row-id pyfunc (see ``_row_id_model``); returns its version."""
    model, signature, example = _row_id_model()
    with mlflow.start_run(), warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        requirements = _pyfunc_requirements(
            "row-id", model, signature=signature, input_example=example
        )
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=model,
            signature=signature,
            input_example=example,
            pip_requirements=requirements,
            registered_model_name=name,
        )
    return str(info.registered_model_version)


def save_summary_model(path: Path) -> Path:
    """Save a pyfunc that answers one number per request (the sum of its ids): not per row."""

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "add type hints": deliberately none

        class Summary(mlflow.pyfunc.PythonModel):  # defined here: cloudpickle ships it by value
            def predict(self, context, model_input, params=None):  # type: ignore[no-untyped-def]
                return [int(model_input["id"].sum())]

        requirements = _pyfunc_requirements("summary", Summary())
        mlflow.pyfunc.save_model(str(path), python_model=Summary(), pip_requirements=requirements)
    return path


def save_slow_loading_model(path: Path, seconds: float) -> Path:
    """Save a pyfunc that takes ``seconds`` to load, then echoes the row count (for starts that
    must take a while: ``log_slow_loading_version`` registers one through a run)."""
    import time

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "add type hints": deliberately none

        class SlowLoading(mlflow.pyfunc.PythonModel):  # cloudpickle ships it by value
            def load_context(self, context):  # type: ignore[no-untyped-def]
                time.sleep(seconds)

            def predict(self, context, model_input, params=None):  # type: ignore[no-untyped-def]
                return [len(model_input)] * len(model_input)

        # Served with --env-manager local only: no inference of requirements (seconds per kind).
        requirements = [f"mlflow=={mlflow.__version__}", "cloudpickle"]
        mlflow.pyfunc.save_model(
            str(path), python_model=SlowLoading(), pip_requirements=requirements
        )
    return path
