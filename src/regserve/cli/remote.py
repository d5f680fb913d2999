"""Talking to a running regserve from the command line: where, with which token, and output."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any, Optional

import httpx
import typer
from rich.console import Console
from rich.table import Table

__all__ = ["HostOption", "OutputOption", "Remote", "TokenOption", "emit"]

HostOption = Annotated[
    str,
    typer.Option(
        "--host", envvar="REGSERVE_HOST", show_default=True,
        help="regserve's URL (or host[:port]).",
    ),
]  # fmt: skip
TokenOption = Annotated[
    Optional[str],  # noqa: UP045 - typer reads the annotation at runtime
    typer.Option(
        "--token", envvar="REGSERVE_TOKEN",
        help="Your token; default: the admin token in ./.regserve/admin-token when present.",
    ),
]  # fmt: skip
OutputOption = Annotated[
    str, typer.Option("--output", "-o", help="table (for people) or json (for scripts).")
]
_DEFAULT_TOKEN_FILE = Path(".regserve") / "admin-token"


def base_url(host: str) -> str:
    if "://" in host:
        return host.rstrip("/")
    return f"http://{host if ':' in host else host + ':8080'}"


class Remote:
    """A client of one regserve; an error answer or no answer exits non-zero with a message."""

    def __init__(self, host: str, token: str | None) -> None:
        token = token or _token_file()
        if not token:
            _fail("no token: pass --token or set REGSERVE_TOKEN", code=2)
        self._client = httpx.Client(
            base_url=base_url(host), headers={"Authorization": f"Bearer {token}"}, timeout=30
        )

    def call(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        try:
            response = self._client.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            _fail(f"cannot reach {self._client.base_url}: {exc}", code=3)
        try:
            data = response.json()
        except ValueError:
            data = {"message": response.text}
        if response.status_code >= 400:
            code = data.get("error_code", f"HTTP {response.status_code}")
            _fail(f"{code}: {data.get('message', '')}")
        return dict(data)


def emit(data: Any, output: str, columns: list[str], rows: list[list[Any]]) -> None:
    """Print ``data`` as JSON, or ``rows`` as a table."""
    if output == "json":
        typer.echo(json.dumps(data, indent=2))
        return
    if output != "table":
        _fail(f"unknown --output '{output}': use table or json", code=2)
    table = Table(*columns)
    for row in rows:
        table.add_row(*("" if v is None else str(v) for v in row))
    Console().print(table)


def _token_file() -> str | None:
    try:
        return _DEFAULT_TOKEN_FILE.read_text().strip() or None
    except OSError:
        return None


def _fail(message: str, code: int = 1) -> Any:
    print(f"Error: {message}", file=sys.stderr)
    raise typer.Exit(code)
