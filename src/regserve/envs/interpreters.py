"""Finding Python interpreters on this machine (nothing is ever downloaded).

uv's own discovery stops at the first ``pythonX.Y`` on PATH, and pyenv's shims answer for
versions that are not selected with an error; so candidates are probed one by one.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path

__all__ = ["Interpreter", "find_interpreters", "pick_interpreter"]


@dataclass(frozen=True)
class Interpreter:
    version: tuple[int, int]
    path: Path

    @property
    def label(self) -> str:
        return f"{self.version[0]}.{self.version[1]}"


def _candidates() -> list[Path]:
    dirs = [Path(p) for p in os.environ.get("PATH", "").split(os.pathsep) if p]
    pyenv_root = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv"))
    dirs += sorted(pyenv_root.glob("versions/*/bin"))
    dirs += [Path("/usr/local/bin"), Path("/usr/bin")]
    found: list[Path] = [Path(sys.executable)]
    for directory in dirs:
        found.extend(sorted(directory.glob("python3.[0-9]*")))
    return found


def _probe(path: Path) -> tuple[int, int] | None:
    try:
        out = subprocess.run(
            [str(path), "-c", "import sys; print(*sys.version_info[:2])"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.split()
        return int(out[0]), int(out[1])
    except (OSError, subprocess.SubprocessError, ValueError, IndexError):
        return None


@cache
def _working() -> tuple[Interpreter, ...]:
    """Every working Python 3 interpreter found, in the order found (one per real file)."""
    found: list[Interpreter] = []
    seen: set[Path] = set()
    for path in _candidates():
        if path.name.endswith("-config") or not os.access(path, os.X_OK):
            continue
        real = path.resolve()
        if real in seen:
            continue
        seen.add(real)
        version = _probe(path)
        if version is not None:
            found.append(Interpreter(version, path))
    return tuple(found)


def find_interpreters(usable: Callable[[Path], bool] | None = None) -> tuple[Interpreter, ...]:
    """Every working Python 3 interpreter, one per major.minor (first found wins); only those
    ``usable`` accepts, when given (the ones workers' users can run)."""
    by_version: dict[tuple[int, int], Interpreter] = {}
    for interpreter in _working():
        if interpreter.version in by_version or (usable and not usable(interpreter.path)):
            continue
        by_version[interpreter.version] = interpreter
    return tuple(sorted(by_version.values(), key=lambda i: i.version))


def pick_interpreter(
    wanted: str, allow_nearest: bool, usable: Callable[[Path], bool] | None = None
) -> tuple[Interpreter | None, str]:
    """The interpreter for ``wanted`` (major.minor), or the nearest one; and a note saying so.
    Only interpreters ``usable`` accepts count (workers' users can run them)."""
    major, minor = (int(x) for x in wanted.split("."))
    available = find_interpreters(usable)
    for interpreter in available:
        if interpreter.version == (major, minor):
            return interpreter, ""
    have = ", ".join(i.label for i in available) or "none"
    if not allow_nearest or not available:
        return None, (
            f"The model needs Python {wanted}, which is not installed on this machine "
            f"(available: {have}). Install it, or set REGSERVE_PYTHON_FALLBACK=nearest."
        )
    same_major = [i for i in available if i.version[0] == major]
    nearest = min(
        same_major or list(available),
        key=lambda i: (abs(i.version[1] - minor), -i.version[1]),
    )
    return nearest, (
        f"The model needs Python {wanted}, which is not installed (available: {have}); "
        f"using the nearest, Python {nearest.label}."
    )
