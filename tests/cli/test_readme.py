"""The README's shell blocks work as written from a fresh clone after ``make run``: the venv is
activated before the first command that needs it, every ``regserve`` line parses with the
command's real options (and no deprecated spelling), every file run exists, and every curl
with a body names its type."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import typer.main
from typer.core import TyperGroup

from regserve.cli.main import app
from regserve.cli.remote import FORMATS

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
CLI_DOC = ROOT / "docs" / "cli.md"
_FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.MULTILINE | re.DOTALL)
_NEEDS_VENV = frozenset({"python", "regserve", "mlflow"})
_DATA_FILE = re.compile(r"\.(csv|json|jsonl|parquet)$")


def _commands(page: Path = README) -> list[list[str]]:
    """Each command of the page's shell blocks, as words (comments and continuations
    resolved); ```python and ```ini blocks are not shell."""
    commands = []
    for kind, block in _FENCE.findall(page.read_text()):
        if kind:
            continue
        for line in block.replace("\\\n", " ").splitlines():
            words = shlex.split(line, comments=True)
            if words:
                commands.append(words)
    return commands


def test_the_venv_is_activated_before_anything_needs_it() -> None:
    commands = _commands()
    activated = next(i for i, c in enumerate(commands) if c[:2] == [".", ".venv/bin/activate"])
    first = next(i for i, c in enumerate(commands) if c[0] in _NEEDS_VENV)
    assert activated < first, f"`{' '.join(commands[first])}` runs before the venv is activated"


def test_every_file_the_readme_runs_is_in_the_repository() -> None:
    run = [c[1] for c in _commands() if c[0] == "python" and len(c) > 1]
    assert run, "the README runs no python file"
    assert [f for f in run if not (ROOT / f).is_file()] == []


def test_every_curl_with_a_body_says_it_is_json() -> None:
    bodies = [c for c in _commands() if c[0] == "curl" and "-d" in c]
    assert bodies
    for curl in bodies:
        assert "Content-Type: application/json" in curl, " ".join(curl)


@pytest.mark.parametrize(("page", "least"), [(README, 8), (CLI_DOC, 3)], ids=["README", "cli.md"])
def test_every_regserve_line_parses(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, page: Path, least: int
) -> None:
    """Each ``regserve ...`` line of the page's shell blocks is parsed (options, arguments and
    their checks) by the real command, without running it; the data files it names are made
    empty first."""
    monkeypatch.chdir(tmp_path)
    lines = [c[1:] for c in _commands(page) if c[0] == "regserve"]
    assert len(lines) >= least
    for words in lines:
        for word in words:
            if _DATA_FILE.search(word):
                (tmp_path / word).touch()
        try:
            _parse(words)
        except Exception as exc:  # typer's click errors: a bad option, a missing argument
            message = getattr(exc, "format_message", exc.__str__)()
            pytest.fail(f"`regserve {shlex.join(words)}`: {message}")


def _parse(words: list[str]) -> None:
    # typer carries its own copy of click: its classes, not click's, are used throughout
    command = typer.main.get_command(app)
    context = command.context_class(command, info_name="regserve")
    rest = list(words)
    while isinstance(command, TyperGroup):
        name = rest.pop(0)
        found = command.get_command(context, name)
        assert found is not None, f"no command '{name}' in `regserve {shlex.join(words)}`"
        command = found
        context = command.context_class(command, info_name=name, parent=context)
    assert command.name != "regserve", "no command named"
    with command.make_context(command.name, rest, parent=context) as parsed:
        # -o is a format everywhere; a file there is the deprecated spelling of `score`
        assert parsed.params.get("output", "table") in FORMATS, shlex.join(words)
