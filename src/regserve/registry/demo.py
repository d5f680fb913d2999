"""The iris demo model, registered through regserve's own MLflow API like a user would.

Its two models are trained and saved once per machine and set of library versions, into a
cache (:func:`prepare`, in a child process: ``python -m regserve.registry.demo --prepare``;
``make`` runs it when it builds ``.venv``). Registering them (:func:`register`) then trains
nothing and imports no model flavor: each version is a run whose artifacts are the saved
files, uploaded through regserve with the admin token, and a model version made from them, as
a user registering a saved model would do (:mod:`regserve.registry.demo_rest`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import os
import platform
import sys
import tempfile
import threading
from asyncio.subprocess import PIPE, STDOUT
from importlib.metadata import version
from pathlib import Path

from regserve.errors import RegServeError
from regserve.registry.models import ModelSnapshot

__all__ = [
    "DEMO_MODEL_NAME",
    "FLAVORS",
    "DemoModelError",
    "default_cache_dir",
    "looks_complete",
    "prepare",
    "prepare_in_child",
    "prepared",
    "register",
    "register_in_background",
]

DEMO_MODEL_NAME = "iris-classifier"
IRIS_COLUMNS = ("sepal_length", "sepal_width", "petal_length", "petal_width")
_STATE_TAG = "regserve.demo"  # "pending" while being built, "complete" once done
_EXPERIMENT = "regserve-demo"
_REQUIRED = ("mlflow", "cloudpickle", "numpy", "pandas", "scikit-learn", "scipy")
"""What the demo model needs, pinned from this interpreter's versions: MLflow's requirement
inference (a child process loading the model) took most of a version's registration."""
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
_VERSIONS = (1.0, 0.5)
"""Each version's regularisation (C), in version order."""
_CACHE_FORMAT = "1"
"""Bumped when what :func:`prepare` saves changes."""
_COMPLETE = "complete"
_ONE_THREAD = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
"""Training two regressions on 150 rows with BLAS threads on a busy 2-core machine took 2.6 s
(the threads spin against each other); with one, 0.08 s."""


class DemoModelError(RegServeError):
    """Registering the demo model failed; the message carries the child's output."""


async def prepare_in_child(cache_dir: Path | None, timeout: float = 600.0) -> Path:
    """The demo's prepared models (:func:`prepared`), trained and saved by a child process
    (``python -m regserve.registry.demo --prepare``) when no earlier run did: this process
    imports neither scikit-learn nor MLflow's model flavors. The child is killed if this is
    cancelled (regserve stopped meanwhile)."""
    cache_dir = cache_dir or default_cache_dir()
    target = prepared(cache_dir)
    if (target / _COMPLETE).is_file():
        return target
    env = {**os.environ, **dict.fromkeys(_ONE_THREAD, "1")}
    command = [sys.executable, "-m", "regserve.registry.demo", "--prepare"]
    child = await asyncio.create_subprocess_exec(
        *command, "--cache-dir", str(cache_dir), env=env, stdout=PIPE, stderr=STDOUT
    )
    try:
        output, _ = await asyncio.wait_for(child.communicate(), timeout)
    except (asyncio.CancelledError, TimeoutError) as exc:
        child.kill()
        await child.wait()
        if isinstance(exc, TimeoutError):
            raise DemoModelError(f"training the demo model took over {timeout:.0f} s") from exc
        raise
    if child.returncode != 0:
        text = output.decode(errors="replace")[-4000:]
        raise DemoModelError(f"training the demo model failed:\n{text}")
    return target


async def register_in_background(tracking_uri: str, token: str, models: Path) -> None:
    """:func:`register` in a daemon thread: a stop meanwhile abandons it. MLflow's client
    retries a refused connection for minutes, and an executor thread (``asyncio.to_thread``)
    would hold the process's exit that long after regserve closed its socket."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()

    def settle(error: BaseException | None) -> None:
        if done.done():
            return  # cancelled meanwhile
        if error is None:
            done.set_result(None)
        else:
            done.set_exception(error)

    def run() -> None:
        error: BaseException | None = None
        try:
            register(tracking_uri, token, models)
        except BaseException as exc:  # handed to the waiting task
            error = exc
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits
            loop.call_soon_threadsafe(settle, error)

    threading.Thread(target=run, name="demo registration", daemon=True).start()
    await done


def register(tracking_uri: str, token: str, models: Path) -> None:
    """Converge the demo model in the registry at ``tracking_uri`` to its described state,
    from the prepared ``models``, through MLflow's REST stores with ``token`` (never MLflow's
    process-wide tracking URI or credentials).

    Version 1 goes to Staging, version 2 to Production with the alias ``champion``. A model of
    that name made by someone else is left alone; a demo interrupted halfway is completed.
    Blocking, about a second: a run and its artifacts, then a version, for each version.
    """
    from regserve.registry.demo_rest import DemoRegistry

    DemoRegistry(tracking_uri, token).converge(
        [(c, _version_dir(models, c)) for c in _VERSIONS], _STATE_TAG, _EXPERIMENT
    )


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


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/regserve`` (``~/.cache/regserve``), like uv's and pip's caches."""
    root = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(root) / "regserve"


def prepared(cache_dir: Path) -> Path:
    """Where :func:`prepare` keeps the demo's saved models for this interpreter and these
    library versions (a pickled model is only good for the versions that saved it)."""
    key = "\n".join([_CACHE_FORMAT, platform.python_version(), *requirements()])
    return cache_dir / "demo" / hashlib.sha256(key.encode()).hexdigest()[:16]


def prepare(cache_dir: Path) -> Path:
    """Train and save both versions' models into :func:`prepared` unless they are there.

    Saved into a temporary directory beside it, then renamed: a run interrupted halfway, or
    two at once, never leave a half-saved model that counts as prepared.
    """
    target = prepared(cache_dir)
    if (target / _COMPLETE).is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".preparing-") as tmp:
        staging = Path(tmp) / "models"
        _save_models(staging)
        (staging / _COMPLETE).write_text("")
        try:
            staging.rename(target)
        except OSError:  # another run prepared it meanwhile
            if not (target / _COMPLETE).is_file():
                raise
    return target


def _version_dir(models: Path, c: float) -> Path:
    return models / f"C{c}"


def _save_models(models: Path) -> None:
    import logging

    import mlflow.sklearn
    import pandas as pd
    from mlflow.models import infer_signature
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    # Its advice to use skops instead: the demo is regserve's own model (see _SERIALIZATION).
    logging.getLogger("mlflow.sklearn").setLevel(logging.ERROR)
    data = load_iris()
    frame = pd.DataFrame(data.data, columns=list(IRIS_COLUMNS))
    example = frame.iloc[[0, 1, 2]].reset_index(drop=True)
    for c in _VERSIONS:
        model = LogisticRegression(max_iter=300, C=c).fit(frame, data.target)
        mlflow.sklearn.save_model(
            model,
            str(_version_dir(models, c)),
            signature=infer_signature(example, model.predict(example)),
            input_example=example,
            pip_requirements=requirements(),
            serialization_format=_SERIALIZATION,
        )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Register regserve's iris demo model.")
    parser.add_argument("--tracking-uri", help="register it there (MLFLOW_TRACKING_TOKEN)")
    parser.add_argument("--cache-dir", type=Path, default=None, help="its prepared models")
    parser.add_argument(
        "--prepare", action="store_true", help="only train and save the models into the cache"
    )
    args = parser.parse_args(argv)
    if not args.prepare and not args.tracking_uri:
        parser.error("--tracking-uri is required unless --prepare")
    for name in _ONE_THREAD:  # before NumPy is imported
        os.environ.setdefault(name, "1")
    cache_dir = args.cache_dir or default_cache_dir()
    if args.prepare:
        print(prepare(cache_dir))
        return
    token = os.environ.get("MLFLOW_TRACKING_TOKEN", "")
    register(args.tracking_uri, token, prepare(cache_dir))


if __name__ == "__main__":
    main()
