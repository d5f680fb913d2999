"""WorkerUsers: an unprivileged user (uid and gid of the same number) per served model.

The numbers come from a range (``REGSERVE_WORKER_UID_RANGE``, by default systemd's
DynamicUser range 61184-65519) and are not written to ``/etc/passwd``: a process needs no
entry to run as a uid. A number is handed out only when

- no user or group of this machine has it (the passwd and group databases),
- no process runs as it (a worker a previous regserve left running keeps its number taken),
- and no claim names it: every number handed out is claimed host-wide, in a file
  ``<claims dir>/<uid>`` (``REGSERVE_WORKER_UID_CLAIMS``) naming the data dir that holds it. A
  claim is dropped only when that data dir is gone, so two regserve processes on one machine
  never give one number to two models, even while one of them is stopped (its files still
  belong to the number).

Which model has which number is kept in ``<data-dir>/users.json`` (0600), so a model keeps
its user across restarts and its files stay its own. A number whose claim another data dir
took meanwhile is given up and a new one handed out (the model's files then change owner).
"""

from __future__ import annotations

import contextlib
import fcntl
import grp
import json
import os
import pwd
import random
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

__all__ = ["BUILDER", "UidRangeError", "WorkerUser", "WorkerUsers", "parse_uid_range"]

BUILDER = "\0builder"
"""The key of the user environment builds run as (never a model's name: it holds a NUL)."""


class UidRangeError(ValueError):
    """The uid range is malformed or has no free number left."""


@dataclass(frozen=True)
class WorkerUser:
    """The user a model's workers run as."""

    uid: int
    gid: int
    name: str
    """A name for logs and ``USER``: ``regserve-<uid>`` (there is no passwd entry)."""


def parse_uid_range(text: str) -> tuple[int, int]:
    """``"61184-65519"`` as (61184, 65519); UidRangeError when it is not a range of uids > 0."""
    low, sep, high = text.partition("-")
    try:
        first, last = int(low), int(high)
    except ValueError:
        raise UidRangeError(f"expected FIRST-LAST (e.g. 61184-65519), got {text!r}") from None
    if not sep or not 1000 <= first <= last < 2**31 - 1:
        raise UidRangeError(f"expected FIRST-LAST with 1000 <= FIRST <= LAST, got {text!r}")
    return first, last


class WorkerUsers:
    """The users of one data dir's models, claimed in ``claims_dir``."""

    def __init__(self, data_dir: Path, uid_range: tuple[int, int], claims_dir: Path) -> None:
        self._data_dir = str(data_dir)
        self._range = uid_range
        self._claims = claims_dir
        self._file = data_dir / "users.json"
        self._users: dict[str, int] = {}
        self._forgotten: set[int] = set()
        """Numbers given back by this process: handed out again only when nothing else is
        left (a model created again under a deleted one's name gets another)."""

    def start(self) -> None:
        """Read the kept assignment and make sure the claims directory exists (0700)."""
        self._claims.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(self._claims, 0o700)
        with contextlib.suppress(FileNotFoundError, ValueError):
            kept = json.loads(self._file.read_text())
            self._users = {str(k): int(v) for k, v in kept.items()}

    def user_for(self, key: str) -> WorkerUser:
        """The user of ``key`` (a model's name, or :data:`BUILDER`), handed out on first use."""
        with self._locked():
            uid = self._users.get(key)
            if uid is None or not self._still_ours(uid):
                uid = self._hand_out()
                self._users[key] = uid
                self._save()
        return WorkerUser(uid, uid, f"regserve-{uid}")

    def forget(self, key: str) -> None:
        """The model is gone: its number goes back to the range."""
        with self._locked():
            uid = self._users.pop(key, None)
            if uid is not None:
                self._forgotten.add(uid)
                self._save()
                (self._claims / str(uid)).unlink(missing_ok=True)

    def known(self) -> dict[str, int]:
        return dict(self._users)

    # -- internals -------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """One hand-out at a time on this machine (every regserve process locks the same file)."""
        fd = os.open(self._claims / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def _still_ours(self, uid: int) -> bool:
        owner = self._owner(uid)
        if owner == self._data_dir:
            return True
        if owner is None and not _taken_by_system(uid):
            self._claim(uid)
            return True
        return False

    def _hand_out(self) -> int:
        first, last = self._range
        running = _running_uids()
        ours = set(self._users.values())
        count = last - first + 1
        start = random.randrange(count)  # spreads data dirs apart; not a secret
        candidates = [first + (start + offset) % count for offset in range(count)]
        candidates.sort(key=lambda uid: uid in self._forgotten)  # stable: the rest keep order
        for uid in candidates:
            if uid in ours or uid in running or _taken_by_system(uid):
                continue
            owner = self._owner(uid)
            if owner is not None and owner != self._data_dir:
                continue
            self._claim(uid)
            return uid
        raise UidRangeError(
            f"no free uid left in {first}-{last} (REGSERVE_WORKER_UID_RANGE): each served model "
            "takes one; widen the range, or remove data dirs that are no longer used"
        )

    def _owner(self, uid: int) -> str | None:
        """The data dir that claims ``uid``; None when nobody does (or its data dir is gone)."""
        try:
            owner = (self._claims / str(uid)).read_text().strip()
        except FileNotFoundError:
            return None
        return owner if owner and Path(owner).is_dir() else None

    def _claim(self, uid: int) -> None:
        path = self._claims / str(uid)
        tmp = path.with_name(f".{uid}.{os.getpid()}")
        tmp.write_text(self._data_dir + "\n")
        os.replace(tmp, path)

    def _save(self) -> None:
        tmp = self._file.with_name(f".users.json.{os.getpid()}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            json.dump(self._users, out, sort_keys=True)
        os.replace(tmp, self._file)


def _taken_by_system(uid: int) -> bool:
    """A user or group of this machine has the number."""
    for lookup in (pwd.getpwuid, grp.getgrgid):
        try:
            lookup(uid)
            return True
        except KeyError:
            continue
    return False


def _running_uids() -> set[int]:
    """The real uids of every process on the machine."""
    uids: set[int] = set()
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            uids.add(os.stat(entry.path).st_uid)
    return uids
