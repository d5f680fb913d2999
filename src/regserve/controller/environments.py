"""Preparing a downloaded version's Python environment (``--env-manager virtualenv``)."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

from regserve.envs import BuiltEnv, EnvironmentManager, read_env_spec

__all__ = ["prepare_environment"]

Report = Callable[[str, str], Awaitable[None]]
"""(event_type or "", message): an event when the type is set, else a state_message update."""


async def prepare_environment(
    envs: EnvironmentManager, model_dir: Path, log: Path, report: Report
) -> BuiltEnv:
    """Read the version's logged dependencies and get (build or reuse) its environment.

    Raises the spec's or the build's error (both carry a message meant for the user).
    """
    running = f"{sys.version_info.major}.{sys.version_info.minor}"
    spec = await asyncio.to_thread(read_env_spec, model_dir, running)
    for warning in spec.warnings:
        await report("ENV_WARNING", warning)

    async def progress(message: str) -> None:
        await report("", message)

    count = len(spec.requirements)
    await progress(
        f"Preparing environment {spec.key} (Python {spec.python}, "
        f"{count} requirements from {spec.source})."
    )
    built = await envs.ensure(spec, log, progress)
    for note in built.notes:
        await report("ENV_WARNING", note)
    if built.reused:
        await report(
            "ENV_REUSED", f"Reusing environment {built.key} (MLflow {built.mlflow_version})."
        )
    else:
        await report(
            "ENV_BUILT",
            f"Built environment {built.key} in {built.seconds:g} s "
            f"(MLflow {built.mlflow_version}).",
        )
    return built
