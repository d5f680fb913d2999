"""An environment's bytecode linked from regserve's own where a module is the same file."""

from __future__ import annotations

import os
import py_compile
import subprocess
import sys
from pathlib import Path

from regserve.envs.bytecode import compile_command, link_bytecode, site_packages

TAG = sys.implementation.cache_tag


def _donor_and_site(tmp_path: Path) -> tuple[Path, Path]:
    """A donor with two compiled modules; a site where one is the same file (a hard link,
    as uv installs from its cache) and the other a copy with the same text."""
    donor, site = tmp_path / "donor" / "pkg", tmp_path / "env" / "lib" / "python3.x" / "pkg"
    donor.mkdir(parents=True)
    site.mkdir(parents=True)
    for name in ("same", "copied"):
        (donor / f"{name}.py").write_text(f"WHO = {name!r}\n")
        py_compile.compile(str(donor / f"{name}.py"), doraise=True)
    os.link(donor / "same.py", site / "same.py")
    (site / "copied.py").write_text("WHO = 'copied'\n")
    return donor.parent, site.parent


def test_only_the_same_files_get_the_donors_bytecode(tmp_path: Path) -> None:
    donor, site = _donor_and_site(tmp_path)
    assert link_bytecode(site, donor) == 1
    linked = site / "pkg" / "__pycache__" / f"same.{TAG}.pyc"
    assert linked.stat().st_ino == (donor / "pkg" / "__pycache__" / f"same.{TAG}.pyc").stat().st_ino
    assert not (site / "pkg" / "__pycache__" / f"copied.{TAG}.pyc").exists()
    assert link_bytecode(site, donor) == 0  # already there: nothing linked twice


def test_the_rest_is_compiled_and_the_linked_bytecode_is_what_python_loads(
    tmp_path: Path,
) -> None:
    donor, site = _donor_and_site(tmp_path)
    link_bytecode(site, donor)
    run = subprocess.run(compile_command(Path(sys.executable), site), capture_output=True)
    assert run.returncode == 0, run.stdout + run.stderr
    assert (site / "pkg" / "__pycache__" / f"copied.{TAG}.pyc").is_file()
    # Python loads the linked file as the module's code (-v says so; a stale one would be
    # compiled again), and the module's file is the environment's, not the donor's
    probe = "import sys; sys.path.insert(0, sys.argv[1]); import pkg.same as m; print(m.__file__)"
    shown = subprocess.run(
        [sys.executable, "-v", "-c", probe, str(site)], capture_output=True, text=True, check=True
    )
    linked = site / "pkg" / "__pycache__" / f"same.{TAG}.pyc"
    donated = donor / "pkg" / "__pycache__" / f"same.{TAG}.pyc"
    assert linked.stat().st_ino == donated.stat().st_ino  # compileall left it: up to date
    assert f"# code object from '{linked}'" in shown.stderr
    assert shown.stdout.strip() == str(site / "pkg" / "same.py")


def test_site_packages_is_found_in_an_environment(tmp_path: Path) -> None:
    (tmp_path / "lib" / "python3.11" / "site-packages").mkdir(parents=True)
    assert site_packages(tmp_path) == tmp_path / "lib" / "python3.11" / "site-packages"
    assert site_packages(tmp_path / "nothing") is None
