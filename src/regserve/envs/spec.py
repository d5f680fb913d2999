"""What environment a model version needs, read from the files MLflow logged with it.

``python_env.yaml`` + ``requirements.txt`` first; else the pip part of ``conda.yaml``; else
``requirements.txt`` alone. The key names the environment: two versions with the same Python
major.minor, the same normalized requirements and the same worker protocol share one.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from regserve.errors import InvalidParameterError
from regserve.worker import wire

__all__ = ["CONDA_ONLY", "EnvSpec", "EnvSpecError", "read_env_spec"]

# Conda packages with no PyPI equivalent: system libraries and toolchains conda ships.
CONDA_ONLY = frozenset(
    {
        "_libgcc_mutex",
        "_openmp_mutex",
        "blas",
        "ca-certificates",
        "cudatoolkit",
        "cudnn",
        "icu",
        "intel-openmp",
        "ld_impl_linux-64",
        "libblas",
        "libcblas",
        "libffi",
        "libgcc-ng",
        "libgfortran-ng",
        "libgomp",
        "liblapack",
        "libopenblas",
        "libstdcxx-ng",
        "libuuid",
        "libzlib",
        "mkl",
        "mkl-service",
        "ncurses",
        "openssl",
        "r-base",
        "readline",
        "sqlite",
        "tk",
        "tzdata",
        "xz",
        "zlib",
        "nccl",
        "cuda-toolkit",
        "cuda-nvcc",
    }
)
_PYTHON_VERSION = re.compile(r"^(\d+)\.(\d+)")
_MLFLOW_PIN = re.compile(r"^mlflow(?:-skinny)?\s*(==|<|<=|~=)\s*(\d+)(?:\.(\d+))?")


class EnvSpecError(InvalidParameterError):
    """The model's logged environment cannot be turned into a virtualenv."""


@dataclass(frozen=True)
class EnvSpec:
    python: str
    """Major.minor, e.g. ``3.11``."""
    requirements: tuple[str, ...]
    """Normalized pip requirement lines, sorted."""
    source: str
    """Which file the requirements came from."""
    warnings: tuple[str, ...] = ()
    """Things the user should know (e.g. the Anaconda ``defaults`` channel)."""

    @property
    def key(self) -> str:
        text = "\n".join(
            [f"python={self.python}", f"protocol={wire.PROTOCOL_VERSION}", *self.requirements]
        )
        return hashlib.sha256(text.encode()).hexdigest()[:20]

    @property
    def mlflow_major(self) -> int | None:
        """The MLflow major version the requirements pin, when they pin one."""
        for line in self.requirements:
            match = _MLFLOW_PIN.match(line)
            if match:
                op, major = match.group(1), int(match.group(2))
                if op == "<" and match.group(3) in (None, "0"):
                    return major - 1  # mlflow<2 (or <2.0) means 1.x
                return major
        return None


def read_env_spec(model_dir: Path, default_python: str) -> EnvSpec:
    """The environment a downloaded model needs; EnvSpecError when it cannot be read."""
    python_env = model_dir / "python_env.yaml"
    conda = model_dir / "conda.yaml"
    requirements = model_dir / "requirements.txt"
    if python_env.exists() and requirements.exists():
        data = _load_yaml(python_env)
        python = _major_minor(str(data.get("python", default_python)), python_env.name)
        lines = _requirement_lines(requirements.read_text(), model_dir)
        warnings = _channel_warnings(_load_yaml(conda)) if conda.exists() else ()
        return EnvSpec(python, _with_mlflow(lines), "python_env.yaml", warnings)
    if conda.exists():
        return _from_conda(conda, model_dir, default_python)
    if requirements.exists():
        lines = _requirement_lines(requirements.read_text(), model_dir)
        return EnvSpec(default_python, _with_mlflow(lines), "requirements.txt")
    raise EnvSpecError(
        f"The model at {model_dir.name} has no python_env.yaml, conda.yaml or requirements.txt; "
        "log it with MLflow so that its dependencies are recorded."
    )


def _from_conda(path: Path, model_dir: Path, default_python: str) -> EnvSpec:
    data = _load_yaml(path)
    warnings = _channel_warnings(data)
    python = default_python
    pip_lines: list[str] = []
    conda_only: list[str] = []
    for dep in data.get("dependencies") or []:
        if isinstance(dep, dict):
            pip_lines.extend(str(x) for x in dep.get("pip") or [])
            continue
        name, _, version = str(dep).partition("=")
        name = name.strip().lower()
        if name == "python":
            python = _major_minor(version.lstrip("="), path.name)
        elif name == "pip":
            continue
        elif name in CONDA_ONLY:
            conda_only.append(str(dep))
        else:  # a conda package that exists on the package index under the same name
            pip_lines.append(f"{name}=={version.lstrip('=')}" if version else name)
    if conda_only:
        raise EnvSpecError(
            "conda.yaml needs conda-only packages that have no pip equivalent: "
            f"{', '.join(conda_only)}. Re-log the model with pip requirements "
            "(pip_requirements= in log_model)."
        )
    lines = _requirement_lines("\n".join(pip_lines), model_dir)
    return EnvSpec(python, _with_mlflow(lines), "conda.yaml", warnings)


def _channel_warnings(conda: dict[str, Any]) -> tuple[str, ...]:
    channels = [str(c) for c in conda.get("channels") or []]
    if "defaults" not in channels:
        return ()
    return (
        "conda.yaml names the Anaconda 'defaults' channel, whose terms of service may require "
        "a commercial license; regserve installs the pip dependencies from the package index "
        "instead. Re-log the model with the conda-forge channel to drop it.",
    )


def _load_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise EnvSpecError(f"{path.name} is not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise EnvSpecError(f"{path.name} does not hold a mapping.")
    return data


def _major_minor(version: str, where: str) -> str:
    match = _PYTHON_VERSION.match(version.strip())
    if not match:
        raise EnvSpecError(f"{where} names Python '{version}', which is not a version.")
    return f"{match.group(1)}.{match.group(2)}"


def _requirement_lines(text: str, model_dir: Path, depth: int = 0) -> list[str]:
    lines: list[str] = []
    for raw in text.splitlines():
        line = raw.split(" #", 1)[0].strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith(("-r ", "-c ")) and depth < 3:
            nested = model_dir / line[3:].strip()
            if nested.exists():
                lines.extend(_requirement_lines(nested.read_text(), model_dir, depth + 1))
            continue
        lines.append(re.sub(r"\s+", "", line) if ";" not in line else line)
    return lines


def _with_mlflow(lines: list[str]) -> tuple[str, ...]:
    """Sorted, deduplicated; MLflow added when the model did not list it (its loader needs it)."""
    names = {re.split(r"[<>=!~\[; ]", line, maxsplit=1)[0].lower() for line in lines}
    if not names & {"mlflow", "mlflow-skinny"}:
        from mlflow.version import VERSION

        lines = [*lines, f"mlflow=={VERSION}"]
    elif "setuptools" not in names and any(_pins_mlflow_1(line) for line in lines):
        lines = [*lines, "setuptools<70"]  # MLflow 1.x imports pkg_resources; venvs lack it
    return tuple(sorted(set(lines)))


def _pins_mlflow_1(line: str) -> bool:
    match = _MLFLOW_PIN.match(line)
    if not match:
        return False
    op, major, minor = match.group(1), int(match.group(2)), match.group(3)
    return major == 1 or (op == "<" and major == 2 and minor in (None, "0"))
