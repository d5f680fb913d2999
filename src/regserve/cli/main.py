"""``regserve``: the command line."""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from regserve.cli import serving
from regserve.cli.access import permissions_app, principal_app, token_app
from regserve.cli.inference import inference_table
from regserve.cli.remote import report
from regserve.cli.score import score
from regserve.cli.traffic import traffic_app
from regserve.client.connection import ProfileError
from regserve.client.errors import ClientError
from regserve.settings import Settings

__all__ = ["app", "main"]

app = typer.Typer(
    help="Serve every active version of your MLflow registry's models.",
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},  # subcommands inherit it
)


@app.callback()
def _root() -> None:
    """regserve: MLflow registry model serving."""


@app.command()
def up(
    host: Annotated[Optional[str], typer.Option(help="Address to listen on.")] = None,  # noqa: UP045
    port: Annotated[Optional[int], typer.Option(help="Port to listen on.")] = None,  # noqa: UP045
    data_dir: Annotated[Optional[Path], typer.Option(help="State, artifacts, logs.")] = None,  # noqa: UP045
    registry_uri: Annotated[Optional[str], typer.Option(help="Use this MLflow registry.")] = None,  # noqa: UP045
    store_uri: Annotated[Optional[str], typer.Option(help="regserve's state database.")] = None,  # noqa: UP045
    env_manager: Annotated[Optional[str], typer.Option(help="local or virtualenv.")] = None,  # noqa: UP045
    backend: Annotated[Optional[str], typer.Option(help="local or ray.")] = None,  # noqa: UP045
    ray_address: Annotated[Optional[str], typer.Option(help="Ray cluster.")] = None,  # noqa: UP045
    ray_gateway_url: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option(help="Where Ray replicas fetch model files (default: this gateway)."),
    ] = None,
    demo: Annotated[bool, typer.Option("--demo", help="Register and serve the iris demo.")] = False,
    log_level: Annotated[str, typer.Option(help="Logging level.")] = "INFO",
) -> None:
    """Start regserve: the gateway, the controller and (by default) the MLflow registry."""
    overrides: dict[str, Any] = {
        "host": host,
        "port": port,
        "data_dir": data_dir,
        "registry_uri": registry_uri,
        "store_uri": store_uri,
        "env_manager": env_manager,
        "backend": backend,
        "ray_address": ray_address,
        "ray_gateway_url": ray_gateway_url,
    }
    values = {k: v for k, v in overrides.items() if v is not None}
    if demo:
        values["demo"] = True
    settings = Settings(**values)
    _configure_logging(log_level)
    from regserve.app import serve
    from regserve.backends.local.limits import LimitsUnavailableError
    from regserve.nodes import NodeTypesError
    from regserve.sandbox import IsolationUnavailableError
    from regserve.sandbox.users import UidRangeError

    try:
        _run(serve(settings, announce=typer.echo))
    except (  # the operator's configuration
        NodeTypesError,
        LimitsUnavailableError,
        IsolationUnavailableError,
        UidRangeError,
    ) as exc:
        typer.echo(f"regserve: cannot start: {exc}", err=True)
        raise typer.Exit(2) from exc


@app.command()
def restart(
    data_dir: Annotated[Optional[Path], typer.Option(help="The data dir it serves.")] = None,  # noqa: UP045
) -> None:
    """Restart the regserve serving DATA_DIR in place without dropping a request (SIGHUP).

    It stops accepting, answers what is in flight, and re-executes itself on the same
    listening socket; clients that connect meanwhile wait and are answered by the new
    process, which adopts the running workers (nothing is reloaded or rebuilt).
    """
    import signal

    from regserve.restart.pidfile import read_pidfile

    values: dict[str, Any] = {"data_dir": data_dir} if data_dir is not None else {}
    where = Settings(**values).resolved_data_dir()
    pid = read_pidfile(where)
    if pid is None:
        typer.echo(f"No regserve is running on {where}.", err=True)
        raise typer.Exit(1)
    os.kill(pid, signal.SIGHUP)
    typer.echo(f"Asked regserve (pid {pid}) to restart; its workers keep serving.")


serving.register(app)
app.command("score")(score)
app.add_typer(token_app, name="token")
app.add_typer(principal_app, name="principal")
app.add_typer(permissions_app, name="permissions")
app.add_typer(traffic_app, name="traffic")
app.command("inference-table")(inference_table)


_CHATTY = ("alembic",)
"""Libraries whose INFO lines say nothing to an operator (alembic: one per plugin and
migration of MLflow's database at every start); shown from --log-level DEBUG."""


def _configure_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    if logging.getLogger().getEffectiveLevel() > logging.DEBUG:
        for name in _CHATTY:
            logging.getLogger(name).setLevel(logging.WARNING)


def _run(coro: Any) -> None:
    try:
        import uvloop

        uvloop.run(coro)
    except ImportError:
        asyncio.run(coro)


def main() -> None:
    """Run the command; a client error ends it with its documented exit code."""
    try:
        app()
    except (ClientError, ProfileError) as exc:
        report(exc)
