"""Bytecode for a new environment, compiled once at build time, most of it not compiled at all.

Workers import from the environment's bytecode: the environment is read-only to them, and
with ``PYTHONDONTWRITEBYTECODE`` (common in containers) every start would compile MLflow,
pandas and the model's libraries again. Compiling a whole environment costs more than
installing it, though (17 s against 1.3 s for the demo's six requirements on 2 cores), and
most of what it holds is what regserve's own interpreter has already compiled: uv installs
both from its cache by hard links, so a source file of the environment is often *the same
file* (the same inode) as one of regserve's, whose compiled file sits beside it.

:func:`link_bytecode` hard-links those compiled files into the environment: Python checks a
compiled file against its source's modification time and size on every import, and the source
is the same file, so the compiled file is valid as it is (and Python sets the code's file name
to the path it imported it from). :func:`compile_command` then compiles what is left, skipping
what is up to date. Only compiled files regserve owns are linked (the environment is made
regserve's and read-only before any worker uses it), and only for the same Python.
"""

from __future__ import annotations

import os
import sys
import sysconfig
from pathlib import Path

__all__ = ["compile_command", "link_bytecode", "own_site_packages", "site_packages"]

_CACHE = "__pycache__"


def site_packages(env_dir: Path) -> Path | None:
    """The environment's ``site-packages`` (``lib/pythonX.Y/site-packages``), or None."""
    found = sorted(env_dir.glob("lib/python*/site-packages"))
    return found[0] if len(found) == 1 else None


def own_site_packages() -> Path:
    """regserve's own interpreter's ``site-packages`` (where the donor's bytecode is)."""
    return Path(sysconfig.get_paths()["purelib"])


def link_bytecode(site: Path, donor: Path, cache_tag: str | None = None) -> int:
    """Hard-link ``donor``'s compiled files into ``site`` for every source file of ``site``
    that is the same file as ``donor``'s at the same place; how many were linked. ``site``
    must belong to the same Python as this interpreter (``cache_tag``: its tag, for tests)."""
    tag = cache_tag or sys.implementation.cache_tag
    if tag is None:
        return 0
    owner = os.geteuid()
    linked = 0
    for root, dirs, files in os.walk(site):
        dirs[:] = [d for d in dirs if d != _CACHE]
        here = Path(root)
        there = donor / here.relative_to(site)
        for name in files:
            if name.endswith(".py") and _link_one(here, there, name, tag, owner):
                linked += 1
    return linked


def _link_one(here: Path, there: Path, name: str, tag: str, owner: int) -> bool:
    compiled = f"{name[:-3]}.{tag}.pyc"
    source = os.path.join(here, name)
    donated = os.path.join(there, _CACHE, compiled)
    target = os.path.join(here, _CACHE, compiled)
    try:
        mine, theirs = os.stat(source), os.stat(os.path.join(there, name))
        if (mine.st_ino, mine.st_dev) != (theirs.st_ino, theirs.st_dev):
            return False
        if os.stat(donated).st_uid != owner or os.path.exists(target):
            return False
        os.makedirs(os.path.join(here, _CACHE), exist_ok=True)
        os.link(donated, target)
    except OSError:  # no such file, another device, a read-only place: compiled later
        return False
    return True


def compile_command(python: Path, site: Path) -> list[str]:
    """Compile what has no valid compiled file yet, with the environment's own interpreter
    (its Python's format), in every core. ``-I -S``: no ``.pth`` file of the environment's
    packages runs (the environment may hold code built by the unprivileged builder)."""
    return [str(python), "-I", "-S", "-m", "compileall", "-q", "-j", "0", str(site)]
