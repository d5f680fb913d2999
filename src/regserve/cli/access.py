"""``regserve token|principal|permissions``: tokens, service principals and model rights."""

from __future__ import annotations

import datetime
from typing import Annotated, Any, Optional

import typer

from regserve.cli.remote import (
    EXIT_NOT_FOUND,
    HostOption,
    OutputOption,
    ProfileOption,
    Remote,
    TokenOption,
    emit,
    fail,
)

__all__ = ["permissions_app", "principal_app", "token_app"]

token_app = typer.Typer(help="Create, list and revoke tokens.", no_args_is_help=True)
principal_app = typer.Typer(
    help="Create, list, change and delete users and service principals (admins).",
    no_args_is_help=True,
)
permissions_app = typer.Typer(
    help="Show, grant and revoke rights on registered models.", no_args_is_help=True
)
_PERMISSIONS = "/api/2.0/permissions/registered-models"
_SCIM = "/api/2.0/preview/scim/v2"


def _time(ms: int) -> str:
    if ms < 0:
        return "never"
    return datetime.datetime.fromtimestamp(ms / 1000).isoformat(sep=" ", timespec="seconds")


# -- tokens ------------------------------------------------------------------------------------


@token_app.command("create")
def token_create(
    lifetime_seconds: Annotated[int | None, typer.Option(help="Seconds until it expires.")] = None,
    comment: Annotated[str, typer.Option(help="What it is for.")] = "",
    for_principal: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option(
            "--for", help="Service principal (application id or name) to create it for (admins)."
        ),
    ] = None,
    host: HostOption = None,
    token: TokenOption = None,
    profile: ProfileOption = None,
    output: OutputOption = "table",
) -> None:
    """Create a token; its value is printed once and cannot be read again."""
    body: dict[str, Any] = {"comment": comment, "lifetime_seconds": lifetime_seconds}
    if for_principal:
        path = "/api/2.0/token-management/on-behalf-of/tokens"
        body["application_id"] = for_principal
    else:
        path = "/api/2.0/token/create"
    data = Remote(host, token, profile).call("POST", path, json=body)
    info = data["token_info"]
    emit(
        data,
        output,
        ["token_id", "expires", "comment"],
        [[info["token_id"], _time(info["expiry_time"]), info["comment"]]],
    )
    if output == "table":
        # On a line of its own, never through rich: a table cuts or folds it to the terminal.
        typer.echo("Token value (shown once; it cannot be read again):")
        typer.echo(data["token_value"])


@token_app.command("list")
def token_list(
    all_tokens: Annotated[bool, typer.Option("--all", help="Everyone's tokens (admins).")] = False,
    host: HostOption = None,
    token: TokenOption = None,
    profile: ProfileOption = None,
    output: OutputOption = "table",
) -> None:
    """List your live tokens (or, with --all, everyone's)."""
    path = "/api/2.0/token-management/tokens" if all_tokens else "/api/2.0/token/list"
    data = Remote(host, token, profile).call("GET", path)
    infos = data.get("token_infos", [])
    emit(
        data,
        output,
        ["token_id", "owner", "created", "expires", "comment"],
        [
            [
                i["token_id"],
                i.get("owner_name", "you"),
                _time(i["creation_time"]),
                _time(i["expiry_time"]),
                i["comment"],
            ]
            for i in infos
        ],
    )


@token_app.command("revoke")
def token_revoke(
    token_id: Annotated[
        str, typer.Argument(metavar="TOKEN_ID", help="The token's id (not its value).")
    ],
    any_owner: Annotated[
        bool, typer.Option("--any", help="Someone else's token (admins).")
    ] = False,
    host: HostOption = None,
    token: TokenOption = None,
    profile: ProfileOption = None,
) -> None:
    """Revoke a token at once."""
    remote = Remote(host, token, profile)
    if any_owner:
        remote.call("DELETE", f"/api/2.0/token-management/tokens/{token_id}")
    else:
        remote.call("POST", "/api/2.0/token/delete", json={"token_id": token_id})
    typer.echo(f"Revoked token {token_id}.", err=True)


# -- principals --------------------------------------------------------------------------------


@principal_app.command("create")
def principal_create(
    name: Annotated[
        str, typer.Argument(metavar="NAME", help="Display name (service principal) or user name.")
    ],
    user: Annotated[bool, typer.Option("--user", help="A user, not a service principal.")] = False,
    admin: Annotated[bool, typer.Option("--admin", help="Member of the admins group.")] = False,
    allow_cluster_create: Annotated[
        bool, typer.Option("--allow-cluster-create", help="May enable serving (with CAN_MANAGE).")
    ] = False,
    host: HostOption = None,
    token: TokenOption = None,
    profile: ProfileOption = None,
    output: OutputOption = "table",
) -> None:
    """Create a service principal (or, with --user, a user)."""
    body: dict[str, Any] = {
        "entitlements": [{"value": "allow-cluster-create"}] if allow_cluster_create else [],
        "groups": [{"value": "admins"}] if admin else [],
        **({"userName": name} if user else {"displayName": name}),
    }
    path = f"{_SCIM}/Users" if user else f"{_SCIM}/ServicePrincipals"
    data = Remote(host, token, profile).call("POST", path, json=body)
    emit(data, output, *_principal_rows([data]))


@principal_app.command("list")
def principal_list(
    host: HostOption = None,
    token: TokenOption = None,
    profile: ProfileOption = None,
    output: OutputOption = "table",
) -> None:
    """List users and service principals."""
    remote = Remote(host, token, profile)
    users = remote.call("GET", f"{_SCIM}/Users").get("Resources", [])
    sps = remote.call("GET", f"{_SCIM}/ServicePrincipals").get("Resources", [])
    emit({"users": users, "service_principals": sps}, output, *_principal_rows(users + sps))


def _find_principal(remote: Remote, name: str) -> tuple[str, dict[str, Any]]:
    """The SCIM collection and entry of the principal named ``name`` (or application id)."""
    for collection in ("Users", "ServicePrincipals"):
        for p in remote.call("GET", f"{_SCIM}/{collection}").get("Resources", []):
            if name in (p.get("userName"), p.get("displayName"), p.get("applicationId")):
                return collection, p
    raise typer.BadParameter(f"no user or service principal named '{name}'")


@principal_app.command("update")
def principal_update(
    name: Annotated[
        str, typer.Argument(metavar="NAME", help="User name, display name or application id.")
    ],
    active: Annotated[
        bool | None,
        typer.Option("--active/--inactive", help="Activate, or deactivate (its tokens stop)."),
    ] = None,
    admin: Annotated[
        bool | None, typer.Option("--admin/--no-admin", help="Member of the admins group.")
    ] = None,
    allow_cluster_create: Annotated[
        bool | None,
        typer.Option(
            "--allow-cluster-create/--no-allow-cluster-create",
            help="May enable serving (with CAN_MANAGE).",
        ),
    ] = None,
    host: HostOption = None,
    token: TokenOption = None,
    profile: ProfileOption = None,
    output: OutputOption = "table",
) -> None:
    """Deactivate or activate a principal, or change its admin group or entitlement."""
    operations: list[dict[str, Any]] = []
    if active is not None:
        operations.append({"op": "replace", "path": "active", "value": active})
    flags = (
        ("groups", "admins", admin),
        ("entitlements", "allow-cluster-create", allow_cluster_create),
    )
    for path, value, flag in flags:
        if flag is not None:
            operations.append(
                {"op": "add" if flag else "remove", "path": path, "value": [{"value": value}]}
            )
    if not operations:
        raise typer.BadParameter("say what to change: --inactive, --admin, ...")
    remote = Remote(host, token, profile)
    collection, found = _find_principal(remote, name)
    body = {"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": operations}
    data = remote.call("PATCH", f"{_SCIM}/{collection}/{found['id']}", json=body)
    emit(data, output, *_principal_rows([data]))


@principal_app.command("delete")
def principal_delete(
    name: Annotated[
        str, typer.Argument(metavar="NAME", help="User name, display name or application id.")
    ],
    host: HostOption = None,
    token: TokenOption = None,
    profile: ProfileOption = None,
) -> None:
    """Delete a principal with its tokens and its permissions."""
    remote = Remote(host, token, profile)
    collection, found = _find_principal(remote, name)
    remote.call("DELETE", f"{_SCIM}/{collection}/{found['id']}")
    typer.echo(f"Deleted {name} with its tokens and permissions.", err=True)


def _principal_rows(items: list[dict[str, Any]]) -> tuple[list[str], list[list[Any]]]:
    rows = []
    for p in items:
        groups = {g["value"] for g in p.get("groups", [])}
        entitlements = {e["value"] for e in p.get("entitlements", [])}
        rows.append(
            [
                "service principal" if "applicationId" in p else "user",
                p.get("displayName"),
                p.get("applicationId", ""),
                "yes" if "admins" in groups else "",
                "yes" if "allow-cluster-create" in entitlements else "",
                "yes" if p.get("active", True) else "no",
            ]
        )
    columns = ["kind", "name", "application_id", "admin", "allow-cluster-create", "active"]
    return columns, rows


# -- permissions -------------------------------------------------------------------------------

UserOption = Annotated[Optional[str], typer.Option("--user", help="A user name.")]  # noqa: UP045
SpOption = Annotated[
    Optional[str],  # noqa: UP045
    typer.Option("--service-principal", help="A service principal's application id or name."),
]
GroupOption = Annotated[
    Optional[str],  # noqa: UP045
    typer.Option("--group", help="'users' (everyone) or 'admins'."),
]


def _grantee(user: str | None, sp: str | None, group: str | None) -> tuple[str, str]:
    given = [
        (k, v)
        for k, v in (("user_name", user), ("service_principal_name", sp), ("group_name", group))
        if v
    ]
    if len(given) != 1:
        raise typer.BadParameter("give exactly one of --user, --service-principal, --group")
    return given[0]


@permissions_app.command("show")
def permissions_show(
    model: Annotated[str, typer.Argument(metavar="MODEL", help="The registered model.")],
    host: HostOption = None,
    token: TokenOption = None,
    profile: ProfileOption = None,
    output: OutputOption = "table",
) -> None:
    """Show who holds which level on a registered model."""
    data = Remote(host, token, profile).call("GET", f"{_PERMISSIONS}/{model}")
    rows = []
    for entry in data["access_control_list"]:
        kind = next(k for k in ("user_name", "service_principal_name", "group_name") if k in entry)
        for p in entry["all_permissions"]:
            rows.append(
                [
                    kind.removesuffix("_name").replace("_", " "),
                    entry["display_name"],
                    entry[kind],
                    p["permission_level"],
                    "yes" if p["inherited"] else "",
                ]
            )
    emit(data, output, ["kind", "name", "id", "permission_level", "inherited"], rows)


@permissions_app.command("grant")
def permissions_grant(
    model: Annotated[str, typer.Argument(metavar="MODEL", help="The registered model.")],
    level: Annotated[
        str,
        typer.Argument(
            metavar="LEVEL",
            help="CAN_READ, CAN_EDIT, CAN_MANAGE_STAGING_VERSIONS, "
            "CAN_MANAGE_PRODUCTION_VERSIONS or CAN_MANAGE.",
        ),
    ],
    user: UserOption = None,
    service_principal: SpOption = None,
    group: GroupOption = None,
    host: HostOption = None,
    token: TokenOption = None,
    profile: ProfileOption = None,
) -> None:
    """Give a user, service principal or group a level on a model (replacing its former one)."""
    kind, name = _grantee(user, service_principal, group)
    body = {"access_control_list": [{kind: name, "permission_level": level.upper()}]}
    Remote(host, token, profile).call("PATCH", f"{_PERMISSIONS}/{model}", json=body)
    typer.echo(f"Granted {level.upper()} on '{model}' to {name}.", err=True)


@permissions_app.command("revoke")
def permissions_revoke(
    model: Annotated[str, typer.Argument(metavar="MODEL", help="The registered model.")],
    user: UserOption = None,
    service_principal: SpOption = None,
    group: GroupOption = None,
    host: HostOption = None,
    token: TokenOption = None,
    profile: ProfileOption = None,
) -> None:
    """Take a user's, service principal's or group's direct rights on a model away."""
    kind, name = _grantee(user, service_principal, group)
    remote = Remote(host, token, profile)
    current = remote.call("GET", f"{_PERMISSIONS}/{model}")["access_control_list"]
    kept, dropped = [], False
    for entry in current:
        direct = [p for p in entry["all_permissions"] if not p["inherited"]]
        if not direct:
            continue
        if kind in entry and name in (entry[kind], entry.get("display_name")):
            dropped = True
            continue
        key = next(k for k in ("user_name", "service_principal_name", "group_name") if k in entry)
        kept.append({key: entry[key], "permission_level": direct[0]["permission_level"]})
    if not dropped:
        fail(f"{name} holds no direct rights on '{model}'.", code=EXIT_NOT_FOUND)
    remote.call("PUT", f"{_PERMISSIONS}/{model}", json={"access_control_list": kept})
    typer.echo(f"Revoked the rights of {name} on '{model}'.", err=True)
