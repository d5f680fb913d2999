"""Running the ``regserve`` command as a user does: a subprocess with its own environment."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.support.server import ADMIN_TOKEN


def run_cli(
    url: str | None,
    *args: str,
    token: str | None = ADMIN_TOKEN,
    cwd: Path | None = None,
    timeout: float = 120,
    **env: str,
) -> subprocess.CompletedProcess[str]:
    """``regserve ARGS`` against ``url`` with ``token`` (None: no host/token in the environment).

    The profile file is pointed at a path that does not exist unless ``env`` names one, so the
    tester's own ``~/.regserve/profiles.ini`` never leaks in.
    """
    full = {k: v for k, v in os.environ.items() if not k.startswith("REGSERVE_")}
    full["REGSERVE_CONFIG_FILE"] = "/nonexistent/regserve-profiles.ini"
    if url is not None:
        full["REGSERVE_HOST"] = url
    if token is not None:
        full["REGSERVE_TOKEN"] = token
    full.update(env)
    return subprocess.run(
        [sys.executable, "-m", "regserve.cli", *args],
        env=full,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def ok(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 0, (done.returncode, done.stderr)
    return done.stdout
