"""Handing out a user per model: free numbers only, claimed host-wide, kept across restarts."""

from __future__ import annotations

import json
import pwd
from pathlib import Path

import pytest

from regserve.sandbox.users import BUILDER, UidRangeError, WorkerUsers, parse_uid_range

BASE = 2_000_000_000
"""Far from the numbers the real regserve processes of this machine hand out (which a unit
test must not collide with: a number some process runs as is never handed out)."""


def _users(tmp_path: Path, name: str, uid_range: tuple[int, int]) -> WorkerUsers:
    data_dir = tmp_path / name
    data_dir.mkdir(exist_ok=True)
    users = WorkerUsers(data_dir, uid_range, tmp_path / "claims")
    users.start()
    return users


def test_each_model_gets_its_own_number_kept_across_restarts(tmp_path: Path) -> None:
    users = _users(tmp_path, "data", (BASE, BASE + 6))
    a, b, builder = users.user_for("a"), users.user_for("b"), users.user_for(BUILDER)
    assert len({a.uid, b.uid, builder.uid}) == 3
    assert a.uid == a.gid
    assert a.name == f"regserve-{a.uid}"
    assert users.user_for("a") == a
    kept = json.loads((tmp_path / "data" / "users.json").read_text())
    assert kept == {"a": a.uid, "b": b.uid, BUILDER: builder.uid}
    assert oct((tmp_path / "data" / "users.json").stat().st_mode & 0o777) == "0o600"
    again = _users(tmp_path, "data", (BASE, BASE + 6))
    assert again.user_for("a") == a  # a restart: the same user, so its files stay its own


def test_two_data_dirs_never_share_a_number(tmp_path: Path) -> None:
    first, second = (
        _users(tmp_path, "one", (BASE, BASE + 3)),
        _users(tmp_path, "two", (BASE, BASE + 3)),
    )
    taken = {first.user_for(m).uid for m in ("a", "b")}
    theirs = {second.user_for(m).uid for m in ("a", "b")}
    assert not taken & theirs
    with pytest.raises(UidRangeError, match="no free uid left in"):
        second.user_for("c")


def test_a_claim_whose_data_dir_is_gone_is_free_again(tmp_path: Path) -> None:
    gone = _users(tmp_path, "gone", (BASE, BASE))
    uid = gone.user_for("a").uid
    other = _users(tmp_path, "other", (BASE, BASE))
    with pytest.raises(UidRangeError):
        other.user_for("a")
    (tmp_path / "gone" / "users.json").unlink()
    (tmp_path / "gone").rmdir()
    assert other.user_for("a").uid == uid


def test_the_machine_s_own_users_are_skipped(tmp_path: Path) -> None:
    nobody = pwd.getpwnam("nobody").pw_uid
    users = _users(tmp_path, "data", (nobody, nobody + 1))
    assert users.user_for("a").uid == nobody + 1
    with pytest.raises(UidRangeError):
        users.user_for("b")


def test_a_forgotten_model_gives_its_number_back(tmp_path: Path) -> None:
    users = _users(tmp_path, "data", (BASE, BASE))
    uid = users.user_for("a").uid
    users.forget("a")
    assert not (tmp_path / "claims" / str(uid)).exists()
    assert users.user_for("b").uid == uid


@pytest.mark.parametrize("text", ["", "61184", "61190-61184", "10-20", "a-b", "61184-"])
def test_a_bad_range_says_what_is_expected(text: str) -> None:
    with pytest.raises(UidRangeError, match="FIRST-LAST"):
        parse_uid_range(text)
