"""Talking to a running regserve from the command line: where, with which token, and output.

Every remote command takes ``--host``, ``--token``, ``--profile`` and (when it prints data)
``--output table|json``; ``regserve.client.connection`` resolves them, and ``exit_code_for``
is the one table from errors to exit codes (``main`` applies it).
"""

from __future__ import annotations

import json
import os
import sys
from typing import Annotated, Any, NoReturn, Optional

import typer
from rich.console import Console
from rich.table import Table

from regserve.client import Client
from regserve.client.connection import ProfileError, resolve_connection
from regserve.client.errors import (
    ClientError,
    ConnectionFailedError,
    DeadlineExceededError,
    NotFoundError,
    PermissionDeniedError,
    UnauthenticatedError,
    UnavailableError,
    WaitTimeoutError,
)

__all__ = [
    "EXIT_AUTH",
    "EXIT_FAILED",
    "EXIT_NOT_FOUND",
    "EXIT_UNREACHABLE",
    "EXIT_USAGE",
    "FORMATS",
    "HostOption",
    "ModelArg",
    "OutputOption",
    "ProfileOption",
    "Remote",
    "TokenOption",
    "emit",
    "exit_code_for",
    "fail",
]

EXIT_FAILED = 1  # the server refused, or serving ended FAILED
EXIT_USAGE = 2  # bad arguments or profile (click uses 2 for usage errors too)
EXIT_AUTH = 3  # no, wrong or expired token, or not allowed
EXIT_NOT_FOUND = 4  # no such model, version or route
EXIT_UNREACHABLE = 5  # no answer, timed out, or still unavailable after the retries

ModelArg = Annotated[str, typer.Argument(metavar="MODEL", help="The registered model.")]
HostOption = Annotated[
    Optional[str],  # noqa: UP045 - typer reads the annotation at runtime
    typer.Option(
        "--host",
        show_default=False,
        help="regserve's URL (or host[:port]). Default: $REGSERVE_HOST, the profile's host, "
        "http://127.0.0.1:8080.",
    ),
]
TokenOption = Annotated[
    Optional[str],  # noqa: UP045
    typer.Option(
        "--token",
        show_default=False,
        help="Your token. Default: $REGSERVE_TOKEN, the profile's token, ./.regserve/admin-token.",
    ),
]
ProfileOption = Annotated[
    Optional[str],  # noqa: UP045
    typer.Option(
        "--profile",
        show_default=False,
        # "\\[": a bracket, not rich markup (which would swallow "[default]")
        help="Section of ~/.regserve/profiles.ini (default: $REGSERVE_PROFILE, then \\[default]).",
    ),
]


_PIPED_WIDTH = 400
"""Width of a table printed to a file or pipe (rich would take 80): rows stay on one line."""

FORMATS = ("table", "json")
"""What ``-o/--output`` takes, in every command that prints data."""


def _check_output(value: str) -> str:
    if value not in FORMATS:
        raise typer.BadParameter(f"'{value}': use table or json")
    return value


OutputOption = Annotated[
    str,
    typer.Option(
        "--output", "-o", callback=_check_output, help="table (for people) or json (for scripts)."
    ),
]


def exit_code_for(error: Exception) -> int:
    """The exit code scripts can rely on for ``error`` (documented in docs/cli.md)."""
    if isinstance(error, ProfileError):
        return EXIT_USAGE
    if isinstance(error, (UnauthenticatedError, PermissionDeniedError)):
        return EXIT_AUTH
    if isinstance(error, NotFoundError):
        return EXIT_NOT_FOUND
    unreachable = (ConnectionFailedError, WaitTimeoutError, DeadlineExceededError, UnavailableError)
    if isinstance(error, unreachable):
        return EXIT_UNREACHABLE
    return EXIT_FAILED


class Remote:
    """A client of the regserve the options name; errors propagate to ``main``."""

    def __init__(self, host: str | None, token: str | None, profile: str | None = None) -> None:
        connection = resolve_connection(host, token, profile)
        if not connection.token:
            fail(
                "no token: pass --token, set REGSERVE_TOKEN or put one in a profile",
                code=EXIT_AUTH,
            )
        self.client = Client(connection.url, connection.token)

    def call(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        return self.client.request(method, path, **kwargs)


def emit(data: Any, output: str, columns: list[str], rows: list[list[Any]]) -> None:
    """Print ``data`` as JSON, or ``rows`` as a table."""
    if output == "json":
        typer.echo(json.dumps(data, indent=2))
        return
    table = Table()
    for column in columns:
        table.add_column(column, overflow="fold")  # a narrow terminal folds values, never cuts
    for row in rows:
        table.add_row(*("" if v is None else str(v) for v in row))
    console = Console()
    if not console.is_terminal and "COLUMNS" not in os.environ:
        console = Console(width=_PIPED_WIDTH)  # into a file or a pipe: rows whole, not at 80
    console.print(table)


def fail(message: str, code: int = EXIT_FAILED) -> NoReturn:
    print(f"Error: {message}", file=sys.stderr)
    raise typer.Exit(code)


def report(error: ClientError | ProfileError) -> NoReturn:
    """Print ``error`` and exit with its code (called once, by ``main``)."""
    print(f"Error: {error}", file=sys.stderr)
    sys.exit(exit_code_for(error))
