"""Per-version Python environments: read a model's logged dependencies, build a virtualenv
with uv once per distinct key, cache it, and put the worker on its path."""

from __future__ import annotations

from regserve.envs.manager import BuiltEnv, EnvBuildError, EnvironmentManager
from regserve.envs.spec import EnvSpec, EnvSpecError, read_env_spec

__all__ = [
    "BuiltEnv",
    "EnvBuildError",
    "EnvSpec",
    "EnvSpecError",
    "EnvironmentManager",
    "read_env_spec",
]
