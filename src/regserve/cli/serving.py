"""``regserve serving|versions|logs|events|cluster``: the control API for people and scripts."""

from __future__ import annotations

import datetime
import time
from typing import Annotated, Any, Optional

import typer
from rich.console import Console

from regserve.cli.remote import (
    HostOption,
    ModelArg,
    OutputOption,
    ProfileOption,
    Remote,
    TokenOption,
    emit,
    fail,
)
from regserve.client import Client
from regserve.states import short_state

__all__ = ["cluster_app", "register", "serving_app"]

serving_app = typer.Typer(help="Enable, disable and watch serving.", no_args_is_help=True)
cluster_app = typer.Typer(help="Show and change a model's serving cluster.", no_args_is_help=True)


def _time(ms: int) -> str:
    return datetime.datetime.fromtimestamp(ms / 1000).isoformat(sep=" ", timespec="seconds")


def _status_rows(status: dict[str, Any]) -> list[list[Any]]:
    config = status.get("desired_cluster_config") or status.get("actual_cluster_config") or {}
    return [
        [
            status["registered_model_name"],
            short_state(status["state"]),
            config.get("node_type_id", ""),
            status.get("state_message", ""),
        ]
    ]


_STATUS_COLUMNS = ["model", "state", "node_type", "message"]


# -- serving -----------------------------------------------------------------------------------


@serving_app.command("enable")
def serving_enable(
    model: ModelArg,
    wait: Annotated[
        bool, typer.Option("--wait", help="Wait until every version is READY (or one FAILED).")
    ] = False,
    timeout: Annotated[float, typer.Option(help="Seconds --wait waits at most.")] = 600,
    host: HostOption = None,
    token: TokenOption = None,
    profile: ProfileOption = None,
    output: OutputOption = "table",
) -> None:
    """Serve every active version of MODEL (and follow the registry from then on)."""
    client = Remote(host, token, profile).client
    client.enable(model)
    if not wait:
        typer.echo(f"Serving enabled for '{model}'.", err=True)
        return
    status = _wait(client, model, timeout)
    emit({"endpoint_status": status}, output, _STATUS_COLUMNS, _status_rows(status))


def _wait(client: Client, model: str, timeout: float) -> dict[str, Any]:
    """``client.wait`` with a spinner on stderr naming each version's state."""
    console = Console(stderr=True)
    with console.status(f"Deploying '{model}'...") as spinner:

        def show(status: dict[str, Any], versions: list[dict[str, Any]]) -> None:
            states = ", ".join(
                f"v{v['endpoint_version_name']} {short_state(v['state'])}" for v in versions
            )
            state = short_state(status["state"])
            spinner.update(f"'{model}' {state}: {states or 'no versions yet'}")

        return client.wait(model, timeout=timeout, on_update=show)


@serving_app.command("disable")
def serving_disable(
    model: ModelArg,
    host: HostOption = None,
    token: TokenOption = None,
    profile: ProfileOption = None,
) -> None:
    """Stop serving MODEL and terminate its cluster."""
    Remote(host, token, profile).client.disable(model)
    typer.echo(f"Serving disabled for '{model}'.", err=True)


@serving_app.command("status")
def serving_status(
    model: ModelArg,
    host: HostOption = None,
    token: TokenOption = None,
    profile: ProfileOption = None,
    output: OutputOption = "table",
) -> None:
    """The serving endpoint's state."""
    status = Remote(host, token, profile).client.status(model)
    emit({"endpoint_status": status}, output, _STATUS_COLUMNS, _status_rows(status))


@serving_app.command("list")
def serving_list(
    host: HostOption = None,
    token: TokenOption = None,
    profile: ProfileOption = None,
    output: OutputOption = "table",
) -> None:
    """Every served model you may read."""
    endpoints = Remote(host, token, profile).client.list_endpoints()
    rows = [row for e in endpoints for row in _status_rows(e)]
    emit({"endpoints": endpoints}, output, _STATUS_COLUMNS, rows)


# -- versions, logs, events --------------------------------------------------------------------


def versions(
    model: ModelArg,
    host: HostOption = None,
    token: TokenOption = None,
    profile: ProfileOption = None,
    output: OutputOption = "table",
) -> None:
    """The served versions of MODEL, their states and the refs that point at them."""
    client = Remote(host, token, profile).client
    served = client.versions(model)
    refs: dict[str, list[str]] = {}
    for alias, version in client.aliases(model).items():
        refs.setdefault(version, []).append(alias)
    rows = [
        [
            v["endpoint_version_name"],
            short_state(v["state"]),
            ", ".join(refs.get(v["endpoint_version_name"], [])),
            _loaded(v),
            v.get("worker_pid") or "",
            v.get("state_message", ""),
        ]
        for v in served
    ]
    columns = ["version", "state", "refs", "loaded", "pid", "message"]
    emit({"endpoint_versions": served}, output, columns, rows)


def _loaded(version: dict[str, Any]) -> str:
    """yes, idle (and why: idle timeout or memory budget), or blank where it does not apply."""
    loaded = version.get("loaded")
    if loaded is None:
        return ""
    if loaded:
        return "yes"
    reason = version.get("idle_reason")
    return f"idle ({reason.lower().replace('_', ' ')})" if reason else "idle"


def logs(
    model: ModelArg,
    version: Annotated[str, typer.Argument(metavar="VERSION", help="The served version, e.g. 1.")],
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep printing lines.")] = False,
    interval: Annotated[float, typer.Option(help="Seconds between polls with -f.")] = 1.0,
    host: HostOption = None,
    token: TokenOption = None,
    profile: ProfileOption = None,
) -> None:
    """A served version's worker log (the last 2000 lines); -f follows it until Ctrl-C."""
    client = Remote(host, token, profile).client
    text = client.logs(model, version)
    typer.echo(text, nl=False)
    if not follow and text and not text.endswith("\n"):
        typer.echo()  # the prompt on a line of its own
    try:
        while follow:
            time.sleep(interval)
            newer = client.logs(model, version)
            typer.echo(_new_part(text, newer), nl=False)
            text = newer
    except KeyboardInterrupt:
        pass


def _new_part(old: str, new: str) -> str:
    """What ``new`` (a later tail of the same log) adds to ``old``; all of it after rotation."""
    if new.startswith(old):
        return new[len(old) :]
    anchor = "".join(old.splitlines(keepends=True)[-3:])  # the last lines printed
    at = new.rfind(anchor) if anchor else -1
    return new if at < 0 else new[at + len(anchor) :]


def events(
    model: ModelArg,
    version: Annotated[
        Optional[str],  # noqa: UP045 - typer reads the annotation at runtime
        typer.Option("--version", help="Only this version's events."),
    ] = None,
    max_events: Annotated[int, typer.Option(help="At most this many (the latest).")] = 500,
    host: HostOption = None,
    token: TokenOption = None,
    profile: ProfileOption = None,
    output: OutputOption = "table",
) -> None:
    """Everything that happened to MODEL's serving, oldest first."""
    found = Remote(host, token, profile).client.events(model, version, max_events)
    rows = [
        [
            _time(e["timestamp"]),
            e["event_type"],
            e.get("endpoint_version_name", ""),
            e.get("principal", ""),
            e["message"],
        ]
        for e in found
    ]
    emit({"events": found}, output, ["time", "event", "version", "by", "message"], rows)


# -- cluster -----------------------------------------------------------------------------------


@cluster_app.command("show")
def cluster_show(
    model: ModelArg,
    host: HostOption = None,
    token: TokenOption = None,
    profile: ProfileOption = None,
    output: OutputOption = "table",
) -> None:
    """The node type and tags MODEL is served with (desired, while a change is pending)."""
    config = Remote(host, token, profile).client.cluster_config(model)
    rows = [["node_type_id", config.get("node_type_id", "")]]
    rows += [[f"tag {t['key']}", t.get("value", "")] for t in config.get("tags", [])]
    emit(config, output, ["setting", "value"], rows)


@cluster_app.command("set")
def cluster_set(
    model: ModelArg,
    node_type: Annotated[str, typer.Option("--node-type", help="A node_type_id on offer.")],
    tag: Annotated[
        Optional[list[str]],  # noqa: UP045
        typer.Option("--tag", help="KEY=VALUE (repeatable), e.g. regserve.batching=on."),
    ] = None,
    host: HostOption = None,
    token: TokenOption = None,
    profile: ProfileOption = None,
) -> None:
    """Replace MODEL's cluster config (node type and every tag)."""
    tags = {}
    for item in tag or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            fail(f"--tag takes KEY=VALUE, got '{item}'", code=2)
        tags[key] = value
    Remote(host, token, profile).client.set_cluster_config(model, node_type, tags)
    typer.echo(f"Cluster config of '{model}' updated.", err=True)


@cluster_app.command("node-types")
def cluster_node_types(
    host: HostOption = None,
    token: TokenOption = None,
    profile: ProfileOption = None,
    output: OutputOption = "table",
) -> None:
    """The node types on offer."""
    offered = Remote(host, token, profile).client.node_types()
    rows = [[n["node_type_id"], n.get("description", "")] for n in offered]
    emit({"node_types": offered}, output, ["node_type_id", "description"], rows)


def register(app: typer.Typer) -> None:
    """Add these commands to the ``regserve`` app."""
    app.add_typer(serving_app, name="serving")
    app.add_typer(cluster_app, name="cluster")
    app.command("versions")(versions)
    app.command("logs")(logs)
    app.command("events")(events)
