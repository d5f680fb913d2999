"""The interpreter of ``--env-manager local`` workers when they run as users of their own.

Such a worker runs regserve's own interpreter and packages. Where the workers' users cannot
start that interpreter (it lives in a directory closed to them, e.g. pyenv's under ``/root``),
regserve makes a small virtualenv, read-only and open to all, from an interpreter of the same
major.minor that they can start, whose site-packages adds regserve's own (a ``.pth`` file):
the same packages, a reachable interpreter. When none can be found, start-up says what to do.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

from regserve.envs.interpreters import find_interpreters
from regserve.sandbox import IsolationUnavailableError, Sandbox
from regserve.sandbox.files import make_readonly_tree, open_passage

__all__ = ["local_interpreter"]

_CHECK = "import regserve.worker.exits"


def local_interpreter(envs_root: Path, builder: Sandbox | None) -> str:
    """The interpreter ``--env-manager local`` workers run with (``builder``: a sandbox of an
    unprivileged user, None when workers run as regserve's own user)."""
    if builder is None or builder.can_run(sys.executable, _CHECK, site=True):
        return sys.executable
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    digest = hashlib.sha1(f"{sys.prefix}\0{sys.version}".encode()).hexdigest()[:12]
    open_passage(envs_root)
    target = envs_root / f"_local-{digest}"
    python = target / "bin" / "python"
    if python.exists() and builder.can_run(python, _CHECK, site=True):
        return str(python)
    candidates = [i.path for i in find_interpreters(builder.can_run) if i.label == version]
    if not candidates:
        raise IsolationUnavailableError(
            f"Workers run as users of their own, but they cannot start regserve's interpreter "
            f"{sys.executable} (a directory on its path is closed to them) and no other Python "
            f"{version} on this machine is open to them. Install Python {version} where every "
            "user can run it (e.g. /usr/bin), or set REGSERVE_WORKER_USERS=off."
        )
    _make_bridge(target, candidates[0], builder)
    return str(python)


def _make_bridge(target: Path, base: Path, builder: Sandbox) -> None:
    tmp = target.with_name(f"{target.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    uv = str(Path(sys.executable).parent / "uv")
    subprocess.run(
        [uv, "venv", "--quiet", "--python", str(base), "--no-project", "--no-config", str(tmp)],
        check=True,
        capture_output=True,
        env={"PATH": os.defpath, "UV_PYTHON_DOWNLOADS": "never"},
    )
    own = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    site_packages = next((tmp / "lib").glob("python*/site-packages"))
    lines = "".join(f"import site; site.addsitedir({path!r})\n" for path in sorted(own))
    (site_packages / "_regserve_local.pth").write_text(lines)
    make_readonly_tree(tmp)
    shutil.rmtree(target, ignore_errors=True)
    os.replace(tmp, target)
    if not builder.can_run(target / "bin" / "python", _CHECK, site=True):
        raise IsolationUnavailableError(
            f"Workers run as users of their own, but they cannot import regserve's packages "
            f"({', '.join(sorted(own))}): open those directories to all users, or set "
            "REGSERVE_WORKER_USERS=off."
        )
