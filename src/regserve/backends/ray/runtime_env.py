"""A version's Ray ``runtime_env``, from the requirements MLflow logged with it.

- ``--env-manager local`` on a Ray instance regserve started: no runtime_env, the replica
  runs in regserve's own interpreter (as a local worker does), so it starts fastest.
- ``--env-manager virtualenv``: Ray's ``uv`` runtime_env with the version's requirements
  (``envs/spec.py`` reads them as for the local backend); Ray builds the environment on each
  node that runs a replica and caches it by its content, so versions with the same
  requirements share it.
- On a cluster regserve connected to (``--ray-address``), and with ``virtualenv``, regserve's
  package goes along as ``py_modules``: the URI it was uploaded to when regserve connected
  (``cluster.py``, :func:`~.cluster.shipped_package`), never a local path, which Serve's config
  refuses. So ``regserve.worker`` is importable in every replica whatever the node has
  installed. The replica imports only ``regserve.worker``, which needs the standard library,
  mlflow, numpy and pandas.

Ray cannot change the Python version per runtime_env: a model logged with another Python
major.minor runs on the cluster's, and the version's log says so.
"""

from __future__ import annotations

import platform
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from regserve.envs.spec import read_env_spec

__all__ = ["runtime_env_for"]


def runtime_env_for(
    model_path: Path,
    env_manager: str,
    package: Sequence[str],
    model_env: Mapping[str, str] | None = None,
) -> tuple[dict[str, Any], list[str]]:
    """(runtime_env, notes for the version's log). Raises EnvSpecError for an unreadable env.

    ``package``: the URIs regserve's package was shipped to (empty: the replicas import the
    installed one). ``model_env``: the model's own variables (its model env file), the only
    ones it gets from regserve; never the server's."""
    runtime_env: dict[str, Any] = {}
    notes: list[str] = []
    if model_env:
        runtime_env["env_vars"] = dict(model_env)
    if env_manager == "virtualenv":
        python = ".".join(platform.python_version_tuple()[:2])
        spec = read_env_spec(model_path, python)
        runtime_env["uv"] = {"packages": list(spec.requirements)}
        notes.append(f"requirements from {spec.source}: {', '.join(spec.requirements)}")
        notes.extend(spec.warnings)
        if spec.python != python:
            notes.append(
                f"the model was logged with Python {spec.python}; Ray runs it on the "
                f"cluster's Python {python} (a runtime_env cannot change it)"
            )
    if package:
        runtime_env["py_modules"] = list(package)
    return runtime_env, notes
