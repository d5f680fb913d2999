"""Finding Python interpreters on this machine (nothing is ever downloaded).

uv's own discovery stops at the first ``pythonX.Y`` on PATH, and pyenv's shims answer for
versions that are not selected with an error; so candidates are probed one by one.
"""

from __future__ import annotations

import os
import subprocess
import sys
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
            capture_output=True, text=True, timeout=10, check=True,
        ).stdout.split()  # fmt: skip
        return int(out[0]), int(out[1])
    except (OSError, subprocess.SubprocessError, ValueError, IndexError):
        return None


@cache
def find_interpreters() -> tuple[Interpreter, ...]:
    """Every working Python 3 interpreter, one per major.minor (first found wins)."""
    by_version: dict[tuple[int, int], Interpreter] = {}
    seen: set[Path] = set()
    for path in _candidates():
        if path.name.endswith("-config") or not os.access(path, os.X_OK):
            continue
        real = path.resolve()
        if real in seen:
            continue
        seen.add(real)
        version = _probe(path)
        if version is not None and version not in by_version:
            by_version[version] = Interpreter(version, path)
    return tuple(sorted(by_version.values(), key=lambda i: i.version))


def pick_interpreter(wanted: str, allow_nearest: bool) -> tuple[Interpreter | None, str]:
    """The interpreter for ``wanted`` (major.minor), or the nearest one; and a note saying so."""
    major, minor = (int(x) for x in wanted.split("."))
    available = find_interpreters()
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
