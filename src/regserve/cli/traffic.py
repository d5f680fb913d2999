"""``regserve traffic show|set|reset``: the traffic config of a model's split URL."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

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

__all__ = ["traffic_app"]

traffic_app = typer.Typer(
    help="Split /model/MODEL/invocations between versions (canaries, A/B tests, shadows).",
    no_args_is_help=True,
)


@traffic_app.command("show")
def traffic_show(
    model: ModelArg,
    host: HostOption = None,
    token: TokenOption = None,
    profile: ProfileOption = None,
    output: OutputOption = "table",
) -> None:
    """MODEL's traffic config and where its traffic goes now."""
    data = Remote(host, token, profile).client.traffic(model)
    now = {r["ref"]: r for r in data["effective_routes"]}
    rows = [
        [r["ref"], f"{r['percent']}%", _now(now.get(r["ref"])), "route"] for r in data["routes"]
    ]
    if data["is_default"]:
        rows = [[r["ref"], "default", _now(r), "route"] for r in data["effective_routes"]]
    if data["shadow"]:
        shadow = data["shadow"]
        rows.append([shadow["ref"], f"{shadow['percent']}%", "", "shadow (never returned)"])
    emit(data, output, ["ref", "set", "now (version)", "kind"], rows)


def _now(route: dict[str, object] | None) -> str:
    if route is None:
        return "no traffic (not READY)"
    return f"{route['percent']}% (v{route['endpoint_version_name']})"


@traffic_app.command("set")
def traffic_set(
    model: ModelArg,
    routes: Annotated[
        list[str], typer.Argument(metavar="REF=PERCENT...", help="e.g. 1=90 champion=10.")
    ],
    shadow: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option("--shadow", help="REF=PERCENT: mirror that share of requests to REF."),
    ] = None,
    host: HostOption = None,
    token: TokenOption = None,
    profile: ProfileOption = None,
) -> None:
    """Split MODEL's requests between refs (percents adding up to 100)."""
    split = dict(_parse(item) for item in routes)
    if len(split) != len(routes):
        fail("each ref may appear once", code=2)
    Remote(host, token, profile).client.set_traffic(
        model, split, _parse(shadow) if shadow else None
    )
    typer.echo(f"Traffic config of '{model}' updated.", err=True)


@traffic_app.command("reset")
def traffic_reset(
    model: ModelArg,
    host: HostOption = None,
    token: TokenOption = None,
    profile: ProfileOption = None,
) -> None:
    """Back to the default: the Production version, else the latest READY version."""
    Remote(host, token, profile).client.set_traffic(model, {})
    typer.echo(f"Traffic of '{model}' goes to the default again.", err=True)


def _parse(item: str) -> tuple[str, int]:
    ref, sep, percent = item.rpartition("=")
    if not sep or not ref or not percent.isdigit():
        fail(f"expected REF=PERCENT (a whole number), got '{item}'", code=2)
    return ref, int(percent)
