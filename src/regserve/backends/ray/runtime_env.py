"""A version's Ray ``runtime_env``, from the requirements MLflow logged with it.

- ``--env-manager local`` on a Ray instance regserve started: no runtime_env, the replica
  runs in regserve's own interpreter (as a local worker does), so it starts fastest.
- ``--env-manager virtualenv``: Ray's ``uv`` runtime_env with the version's requirements
  (``envs/spec.py`` reads them as for the local backend); Ray builds the environment on each
  node that runs a replica and caches it by its content, so versions with the same
  requirements share it. The node's uv installs from the package indexes regserve's own builds
  use (:func:`index_options`: ``REGSERVE_PACKAGE_INDEX_URL``, ``REGSERVE_EXTRA_INDEX_URLS``,
  else uv's index variables in regserve's environment), given as ``uv pip install`` options,
  and with the node's uv cache (Ray's default, ``--no-cache``, is replaced).
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

import os
import platform
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from regserve.envs.spec import read_env_spec
from regserve.settings import Settings

__all__ = ["index_options", "runtime_env_for", "shown_options"]

_UV_INDEX_VARIABLES = (
    ("UV_INDEX_URL", "--index-url"),
    ("UV_DEFAULT_INDEX", "--default-index"),
    ("UV_EXTRA_INDEX_URL", "--extra-index-url"),
    ("UV_INDEX", "--index"),
)
"""uv's own index variables, and the option each stands for (regserve's builds run uv with
them in its environment; a node's uv is given them as options)."""


def index_options(settings: Settings, environ: Mapping[str, str] | None = None) -> list[str]:
    """``uv pip install`` options naming the indexes regserve's own builds install from
    (``envs/manager.py``): its settings, and where a setting is unset, uv's variable."""
    env = os.environ if environ is None else environ
    options: list[str] = []
    if settings.package_index_url:
        options += ["--index-url", settings.package_index_url]
    if settings.extra_index_urls:
        for url in settings.extra_index_urls:
            options += ["--extra-index-url", url]
    for variable, option in _UV_INDEX_VARIABLES:
        if option == "--index-url" and settings.package_index_url:
            continue
        if option == "--extra-index-url" and settings.extra_index_urls:
            continue
        for url in env.get(variable, "").split():
            options += [option, url]
    return options


def shown_options(options: Sequence[str]) -> list[str]:
    """``options`` with any password in a URL replaced, for logs and messages."""
    return [_without_password(option) for option in options]


def _without_password(text: str) -> str:
    if "://" not in text or "@" not in text:
        return text
    parts = urlsplit(text)
    if parts.password is None:
        return text
    host = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit(parts._replace(netloc=f"{parts.username}:***@{host}"))


def runtime_env_for(
    model_path: Path,
    env_manager: str,
    package: Sequence[str],
    model_env: Mapping[str, str] | None = None,
    uv_options: Sequence[str] = (),
) -> tuple[dict[str, Any], list[str]]:
    """(runtime_env, notes for the version's log). Raises EnvSpecError for an unreadable env.

    ``package``: the URIs regserve's package was shipped to (empty: the replicas import the
    installed one). ``model_env``: the model's own variables (its model env file), the only
    ones it gets from regserve; never the server's. ``uv_options``: the index options
    (:func:`index_options`) the nodes' uv installs with."""
    runtime_env: dict[str, Any] = {}
    notes: list[str] = []
    if model_env:
        runtime_env["env_vars"] = dict(model_env)
    if env_manager == "virtualenv":
        python = ".".join(platform.python_version_tuple()[:2])
        spec = read_env_spec(model_path, python)
        runtime_env["uv"] = {
            "packages": list(spec.requirements),
            "uv_pip_install_options": list(uv_options),
        }
        notes.append(f"requirements from {spec.source}: {', '.join(spec.requirements)}")
        indexes = (
            " ".join(shown_options(uv_options))
            or "the node's uv configuration (PyPI unless set there)"
        )
        notes.append(f"the nodes' uv installs them from: {indexes}")
        notes.extend(spec.warnings)
        if spec.python != python:
            notes.append(
                f"the model was logged with Python {spec.python}; Ray runs it on the "
                f"cluster's Python {python} (a runtime_env cannot change it)"
            )
    if package:
        runtime_env["py_modules"] = list(package)
    return runtime_env, notes
