"""The gateway's shape: it never imports the UI (the UI depends on it), and its functions fit
on a screen."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

GATEWAY = Path(__file__).resolve().parents[2] / "src" / "regserve" / "gateway"
MODULES = sorted(GATEWAY.glob("*.py"))


def _imports(tree: ast.AST) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found |= {node.module, *(f"{node.module}.{a.name}" for a in node.names)}
    return found


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.name)
def test_the_gateway_does_not_import_the_ui(path: Path) -> None:
    imported = _imports(ast.parse(path.read_text()))
    assert not {m for m in imported if m == "regserve.ui" or m.startswith("regserve.ui.")}


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.name)
def test_no_function_over_50_lines(path: Path) -> None:
    tree = ast.parse(path.read_text())
    long = [
        (node.name, node.end_lineno - node.lineno + 1)
        for node in ast.walk(tree)
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
        and node.end_lineno is not None
        and node.end_lineno - node.lineno + 1 > 50
    ]
    assert long == []
