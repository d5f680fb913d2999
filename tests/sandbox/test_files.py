"""Who may read what in a data dir, after regserve has set it up."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from regserve.sandbox.files import grant_tree, lock_down, make_readonly_tree, open_passage


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def test_lock_down_closes_everything_but_the_passages(tmp_path: Path) -> None:
    data = tmp_path / "data"
    for name in ("models/old", "logs/m", "artifacts/1", "envs/k", "run"):
        (data / name).mkdir(parents=True)
    for name in ("state.db", "state.db-wal", "admin-token", "logs/m/1.log"):
        (data / name).write_text("x")
        (data / name).chmod(0o644)
    lock_down(data)
    assert _mode(data) == 0o711
    assert {n: _mode(data / n) for n in ("models", "envs", "run")} == dict.fromkeys(
        ("models", "envs", "run"), 0o711
    )
    assert {n: _mode(data / n) for n in ("logs", "artifacts")} == {
        "logs": 0o700,
        "artifacts": 0o700,
    }
    assert {
        n: _mode(data / n) for n in ("state.db", "state.db-wal", "admin-token")
    } == dict.fromkeys(("state.db", "state.db-wal", "admin-token"), 0o600)
    assert _mode(data / "models" / "old") == 0o700  # not granted to any model: closed


def test_a_model_s_files_are_its_group_s_to_read_and_nobody_s_to_change(tmp_path: Path) -> None:
    model = tmp_path / "m" / "1"
    (model / "sub").mkdir(parents=True)
    (model / "MLmodel").write_text("x")
    (model / "run.sh").write_text("x")
    (model / "run.sh").chmod(0o755)
    grant_tree(model, 2_000_000_200)
    for path in (model, model / "sub", model / "MLmodel", model / "run.sh"):
        info = path.lstat()
        assert (info.st_uid, info.st_gid) == (os.geteuid(), 2_000_000_200)
    assert [_mode(p) for p in (model, model / "sub", model / "MLmodel", model / "run.sh")] == [
        0o750,
        0o750,
        0o640,
        0o750,
    ]


def test_an_environment_is_open_to_read_and_closed_to_write(tmp_path: Path) -> None:
    env = tmp_path / "env"
    (env / "bin").mkdir(parents=True)
    (env / "bin" / "python").write_text("x")
    (env / "bin" / "python").chmod(0o4777)  # even a setuid bit a build left
    (env / "lib.py").write_text("x")
    (env / "lib.py").chmod(0o600)
    os.chown(env / "lib.py", 2_000_000_201, 2_000_000_201)
    make_readonly_tree(env)
    assert _mode(env / "bin" / "python") == 0o755
    assert _mode(env / "lib.py") == 0o644
    assert (env / "lib.py").stat().st_uid == os.geteuid()
    open_passage(tmp_path / "a" / "b")
    assert _mode(tmp_path / "a" / "b") == 0o711
