"""Who may read what in the data dir.

regserve's own files are its alone: the data dir and every directory in it are 0700 (0711
where a worker must pass through on the way to its own files), every file 0600, whoever
created it. What a worker needs is given to its user only:

- a model's downloaded files (``models/<model>/``): owned by regserve, group the model's,
  0750/0640, so its workers read them and nobody else does, and they cannot be changed;
- a model's home and temporary directory (``homes/<digest>/``): the model's user's, 0700;
- a model's socket directory (``run/<digest>/``): the model's user's, 0700 (its workers bind
  there; regserve connects as root);
- environments (``envs/``): regserve's, read-only to everyone (they hold public packages,
  shared by the models whose requirements are the same).
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Iterable
from pathlib import Path

__all__ = [
    "PASS_THROUGH",
    "grant_tree",
    "lock_down",
    "make_private_dir",
    "make_readonly_tree",
    "open_passage",
]

PASS_THROUGH = ("models", "envs", "homes", "run")
"""Directories of the data dir that workers pass through (0711: enter, not list)."""


def lock_down(data_dir: Path, pass_through: Iterable[str] = PASS_THROUGH) -> None:
    """The data dir 0711 and its pass-through directories 0711; every other entry of it 0700
    (a directory: nothing in it can be reached, whatever its own modes) or 0600 (a file: the
    state and registry databases and their journals, secrets). A model directory that was not
    granted to its model (an older layout) is closed too. regserve creates what follows with a
    0077 umask, so new files are private from the start."""
    data_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(data_dir, 0o711)
    through = set(pass_through)
    for entry in os.scandir(data_dir):
        if entry.is_symlink():
            continue
        mode = 0o711 if entry.name in through else 0o700 if entry.is_dir() else 0o600
        with contextlib.suppress(FileNotFoundError):
            os.chmod(entry.path, mode)
    models = data_dir / "models"
    if models.is_dir():
        for entry in os.scandir(models):
            info = entry.stat(follow_symlinks=False)
            if stat.S_ISDIR(info.st_mode) and stat.S_IMODE(info.st_mode) != 0o750:
                os.chmod(entry.path, 0o700)


def open_passage(*paths: Path) -> None:
    """Each of ``paths`` (created if needed) regserve's, 0711: anyone may pass through to what
    they may open inside, nobody but regserve may list or change it."""
    for path in paths:
        path.mkdir(parents=True, exist_ok=True)
        os.chmod(path, 0o711)


def make_private_dir(path: Path, uid: int, gid: int) -> None:
    """``path`` (created if needed) owned by ``uid``:``gid``, 0700."""
    path.mkdir(parents=True, exist_ok=True)
    info = path.lstat()
    if stat.S_ISLNK(info.st_mode):
        raise PermissionError(f"{path} is a symbolic link")
    if (info.st_uid, info.st_gid) != (uid, gid):
        os.chown(path, uid, gid, follow_symlinks=False)
    if stat.S_IMODE(info.st_mode) != 0o700:
        os.chmod(path, 0o700)


def grant_tree(path: Path, gid: int) -> None:
    """Everything under ``path`` owned by regserve, group ``gid``, readable by that group only
    (0750 directories, 0640 files; executable bits kept for the group), never writable by it.
    Skipped when ``path`` already has that group (the tree is granted whole or not at all)."""
    info = path.lstat()
    if info.st_gid == gid and stat.S_IMODE(info.st_mode) == 0o750:
        return
    owner = os.geteuid()
    for root, dirs, files in os.walk(path, topdown=False):
        for name in files:
            _grant(Path(root) / name, owner, gid, directory=False)
        for name in dirs:
            _grant(Path(root) / name, owner, gid, directory=True)
    _grant(path, owner, gid, directory=True)


def make_readonly_tree(path: Path) -> None:
    """Everything under ``path`` owned by regserve and readable by all, writable by nobody
    else (an environment built by an unprivileged builder, before any worker uses it)."""
    owner, group = os.geteuid(), os.getegid()
    for root, dirs, files in os.walk(path):
        for name in [*dirs, *files]:
            _readonly(Path(root) / name, owner, group)
    _readonly(path, owner, group)


def _readonly(path: Path, owner: int, group: int) -> None:
    info = path.lstat()
    os.chown(path, owner, group, follow_symlinks=False)
    if stat.S_ISLNK(info.st_mode):
        return
    executable = stat.S_ISDIR(info.st_mode) or bool(info.st_mode & stat.S_IXUSR)
    os.chmod(path, 0o755 if executable else 0o644)


def _grant(path: Path, owner: int, gid: int, *, directory: bool) -> None:
    info = path.lstat()
    os.chown(path, owner, gid, follow_symlinks=False)
    if stat.S_ISLNK(info.st_mode):
        return
    executable = directory or bool(info.st_mode & stat.S_IXUSR)
    os.chmod(path, 0o750 if executable else 0o640)
