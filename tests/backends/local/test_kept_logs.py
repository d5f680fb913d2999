"""The logs of versions that stopped being served: cut to size, pruned by count, read back
only by version number (in-process, on real files)."""

from __future__ import annotations

import os
from pathlib import Path

from regserve.backends.local.kept_logs import keep, prune, read_kept


def _log(folder: Path, name: str, text: str, mtime: int) -> Path:
    path = folder / name
    path.write_text(text)
    os.utime(path, (mtime, mtime))
    return path


def test_keep_cuts_a_long_log_to_its_newest_whole_lines(tmp_path: Path) -> None:
    lines = [f"line {i:04d}" for i in range(1000)]
    path = _log(tmp_path, "3.log", "\n".join(lines) + "\n", 1_700_000_000)
    _log(tmp_path, "3.log.1", "the rotated part", 1_600_000_000)
    keep(path, 100)
    text = path.read_text()
    assert len(text.encode()) <= 100
    assert text.endswith("line 0999\n")
    assert text.startswith("line ")  # no line cut mid-way
    assert not (tmp_path / "3.log.1").exists()
    assert path.stat().st_mtime == 1_700_000_000  # still says when it was written
    kept = read_kept(tmp_path, "3", max_lines=2000, max_bytes=1 << 20)
    assert kept is not None
    assert kept.modified_ms == 1_700_000_000_000
    assert kept.text == text.rstrip("\n")


def test_keep_leaves_a_short_log_as_it_is_and_a_missing_one_missing(tmp_path: Path) -> None:
    path = _log(tmp_path, "1.log", "short\n", 1_700_000_000)
    keep(path, 100)
    assert path.read_text() == "short\n"
    keep(tmp_path / "2.log", 100)
    assert not (tmp_path / "2.log").exists()


def test_prune_keeps_the_newest_logs_of_versions_not_served(tmp_path: Path) -> None:
    for version in range(1, 7):
        _log(tmp_path, f"{version}.log", f"v{version}", 1_700_000_000 + version)
    _log(tmp_path, "1.log.1", "old part of v1", 1_600_000_000)
    _log(tmp_path, "warm-abc.log", "a warm process", 1_000)
    _log(tmp_path, "shared-abc.log", "a shared worker", 1_000)
    prune(tmp_path, 2, serving={"1"})
    left = sorted(p.name for p in tmp_path.iterdir())
    # v1 serves (kept whatever its age); of the others the two written last stay.
    assert left == ["1.log", "1.log.1", "5.log", "6.log", "shared-abc.log", "warm-abc.log"]
    prune(tmp_path, 0, serving=set())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["shared-abc.log", "warm-abc.log"]
    prune(tmp_path / "no-such-folder", 0, serving=set())


def test_read_kept_takes_version_numbers_only(tmp_path: Path) -> None:
    folder = tmp_path / "logs" / "model"
    folder.mkdir(parents=True)
    _log(folder, "2.log", "v2's log", 1_700_000_000)
    _log(tmp_path / "logs", "secret.log", "not a version's", 1_700_000_000)
    assert read_kept(folder, "1", 10, 1000) is None
    for version in ("../secret", "2.log", "", "-1", "2/../2", "\uff12"):  # \uff12: fullwidth 2
        assert read_kept(folder, version, 10, 1000) is None, version
    kept = read_kept(folder, "2", 10, 1000)
    assert kept is not None
    assert kept.text == "v2's log"
