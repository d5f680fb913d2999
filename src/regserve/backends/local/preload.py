"""What a model's warm process imports (:mod:`regserve.worker.warm`): the libraries every model
environment has, and those of the model's flavors, read from its ``MLmodel`` file.

Kept simple on purpose: a fixed table from flavor name to the library that flavor loads with,
plus the pyfunc flavor's ``loader_module`` (``mlflow.sklearn``, ``mlflow.pyfunc.model``...) and the
library a flavor's ``serialization_format`` reads with (``skops``: ``skops.io``, which imports
most of scikit-learn and SciPy; without it a woken or new iris version spent 0.6 s of its
~1 s load importing them in the template). A
module the environment does not have is skipped by the warm process; a library the table does
not name is imported by the template that loads the model, as it would be without a warm
process. Nothing of the model's own code is named (it is not on the warm process's path
anyway): every version of the model is forked from the same warm process.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from pathlib import Path

import yaml

__all__ = [
    "BASE_MODULES",
    "FLAVOR_LIBRARIES",
    "SERIALIZATION_LIBRARIES",
    "modules_for_flavors",
    "preload_modules",
]

_log = logging.getLogger("regserve.supervisor")

BASE_MODULES = ("mlflow", "mlflow.pyfunc", "pandas", "numpy")
"""Imported by every warm process: what loading any MLflow model imports."""

FLAVOR_LIBRARIES = {
    "sklearn": "sklearn",
    "xgboost": "xgboost",
    "lightgbm": "lightgbm",
    "catboost": "catboost",
    "statsmodels": "statsmodels.api",
    "pytorch": "torch",
    "tensorflow": "tensorflow",
    "keras": "keras",
    "onnx": "onnxruntime",
    "transformers": "transformers",
    "sentence_transformers": "sentence_transformers",
    "spacy": "spacy",
    "prophet": "prophet",
    "h2o": "h2o",
}
"""A flavor (a key of ``MLmodel``'s ``flavors``) -> the library it loads with. Some of these do
not survive ``fork()`` (TensorFlow, and torch once CUDA is up): the warm process finds that out
itself (``fork_hazard``) and its supervisor starts templates cold."""

SERIALIZATION_LIBRARIES = {"skops": "skops.io", "cloudpickle": "cloudpickle"}
"""A flavor's ``serialization_format`` -> the library its model file is read with."""

_MODULE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")


def preload_modules(model_path: Path) -> list[str]:
    """The modules a warm process for this model imports (the base ones when its ``MLmodel``
    cannot be read)."""
    return modules_for_flavors(_read_flavors(model_path / "MLmodel"))


def modules_for_flavors(flavors: Mapping[str, object]) -> list[str]:
    """The modules a warm process imports for a model with these flavors (``MLmodel``'s
    ``flavors``: flavor name -> its options)."""
    modules = list(BASE_MODULES)
    for module in _flavor_modules(flavors):
        if module not in modules and _MODULE.match(module):
            modules.append(module)
    return modules


def _read_flavors(mlmodel: Path) -> Mapping[str, object]:
    try:
        flavors = (yaml.safe_load(mlmodel.read_text()) or {}).get("flavors") or {}
    except (OSError, yaml.YAMLError, AttributeError) as exc:
        _log.info(
            "no flavors read from %s (%s): the warm process imports MLflow only", mlmodel, exc
        )
        return {}
    return flavors if isinstance(flavors, dict) else {}


def _flavor_modules(flavors: Mapping[str, object]) -> list[str]:
    found: list[str] = []
    for name, options in flavors.items():
        library = FLAVOR_LIBRARIES.get(str(name))
        if library is not None:
            found.append(library)
        if not isinstance(options, dict):
            continue
        loader = options.get("loader_module")
        if name == "python_function" and isinstance(loader, str):
            found.append(loader)
        reader = SERIALIZATION_LIBRARIES.get(str(options.get("serialization_format")))
        if reader is not None and library is not None:
            found.append(reader)
    return found
