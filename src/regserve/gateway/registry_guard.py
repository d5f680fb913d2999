"""The hosted MLflow server, behind regserve's permissions.

Wraps MLflow's ASGI app. Each request is classified by ``regserve.auth.mlflow_rules``
(method and path; an allow list, so anything unclassified is for admins only), its model
named the way MLflow reads it (query string for GET, JSON body otherwise), the caller's level
on that model checked, and the effects on regserve's ACLs applied once MLflow has answered
200: a created model's creator gets CAN_MANAGE, a renamed model keeps its ACL, a deleted one
loses it. Search answers are cut to the models the caller may read. Artifact requests that
touch the files a registered version was created from need that model's CAN_READ to read
them and CAN_MANAGE to change them.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from regserve.auth.artifact_rules import ArtifactTarget, artifact_target, source_location
from regserve.auth.levels import PermissionLevel, level_for_stage
from regserve.auth.mlflow_rules import Access, RegistryRule, classify, normalize
from regserve.auth.service import Identity
from regserve.errors import (
    InvalidParameterError,
    PayloadTooLargeError,
    PermissionDeniedError,
    RegServeError,
)
from regserve.gateway.bodies import read_body
from regserve.gateway.context import scope_identity
from regserve.gateway.errors import error_body, error_headers, status_for

__all__ = ["RegistryGuard", "RegistryLookups"]


@dataclass(frozen=True)
class RegistryLookups:
    """What the guard asks the registry (handed in by ``regserve.app``)."""

    stage_of: Callable[[str, str], Awaitable[str | None]]
    """The current stage of (model, version), or None when unknown."""
    sources_naming: Callable[[str], Awaitable[list[tuple[str, str]]]]
    """``(model name, source)`` of every version whose source or run names this run or
    logged model id."""


_MAX_BODY = 4 * 1024 * 1024  # registry calls are small; artifacts are not read here


class RegistryGuard:
    """MLflow's app, answering only what the caller may ask."""

    def __init__(self, app: ASGIApp, services: Any, lookups: RegistryLookups) -> None:
        self._app = app
        self._access = services.access
        self._manager = services.manager
        self._lookups = lookups

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        path = normalize(scope["path"])
        if path != scope["path"]:
            scope = {**scope, "path": path, "raw_path": path.encode()}
        rule = classify(scope["method"], path)
        try:
            await self._handle(scope, receive, send, rule)
        except RegServeError as error:
            body = error_body(error.error_code, error.message)
            headers = [*error_headers(error), (b"content-length", str(len(body)).encode())]
            await send({"type": "http.response.start", "status": status_for(error),
                        "headers": headers})  # fmt: skip
            await send({"type": "http.response.body", "body": body})

    async def _handle(self, scope: Scope, receive: Receive, send: Send, rule: RegistryRule) -> None:
        identity = scope_identity(scope)
        if rule.access is Access.ADMIN:
            self._access.require_admin(identity, f"call {scope['method']} {scope['path']}")
        if rule.access in (Access.ADMIN, Access.ANY):
            await self._app(scope, receive, send)
            return
        if rule.access is Access.ARTIFACT:
            target = artifact_target(scope["method"], scope["path"], _query(scope))
            if target is not None and not identity.is_admin:
                await self._authorize_files(identity, target)
            await self._app(scope, receive, send)
            return
        if rule.access is Access.SEARCH:
            if not identity.is_admin:
                send = self._filtered(send, identity, rule.filter_key or "")
            await self._app(scope, receive, send)
            return
        body = (
            await read_body(receive, _MAX_BODY, _too_large)
            if scope["method"] not in ("GET", "HEAD")
            else b""
        )
        params = _params(scope, body)
        name = params.get("name")
        if not isinstance(name, str) or not name:
            raise InvalidParameterError("Missing value for required parameter 'name'.")
        await self._authorize(identity, rule, name, params)
        await self._app(scope, _replay(body, receive), self._effects(send, identity, rule, params))

    async def _authorize(
        self, identity: Identity, rule: RegistryRule, name: str, params: dict[str, Any]
    ) -> None:
        if rule.access is Access.CREATE:
            return
        if rule.access is Access.TRANSITION:
            stage = str(params.get("stage", ""))
            current = await self._lookups.stage_of(name, str(params.get("version", "")))
            needed = max(level_for_stage(stage), level_for_stage(current or "None"))
            action = f"move a version from {current or 'its stage'} to {stage}"
            await self._access.require(identity, name, needed, action)
            return
        await self._access.require(identity, name, rule.level, _describe(rule))

    async def _authorize_files(self, identity: Identity, target: ArtifactTarget) -> None:
        """Files of registered versions follow their models' ACLs; all others are open."""
        location = target.location
        models = sorted({
            name for name, source in await self._lookups.sources_naming(location.owner_id)
            if (found := source_location(source)) is not None and found.contains(location)
        })  # fmt: skip
        if not models:
            return
        if target.write:
            for model in models:
                await self._access.require(
                    identity, model, PermissionLevel.CAN_MANAGE,
                    "change the files a version of it was registered from",
                )  # fmt: skip
            return
        if not await self._access.readable(identity, models):
            raise PermissionDeniedError(
                f"'{identity.name}' lacks CAN_READ on registered model '{models[0]}', whose "
                "version was registered from these files; CAN_READ is needed to read them."
            )

    def _effects(
        self, send: Send, identity: Identity, rule: RegistryRule, params: dict[str, Any]
    ) -> Send:
        effect = "created" if rule.access is Access.CREATE else rule.effect
        if effect is None:
            return send
        name = str(params["name"])

        async def apply(message: Message) -> None:
            # The ACL changes before the client hears "200", so its next call sees them.
            if message["type"] == "http.response.start" and message["status"] == 200:
                if effect == "created":
                    await self._manager.grant_creator(identity, name)
                elif effect == "renamed" and isinstance(params.get("new_name"), str):
                    await self._manager.model_renamed(name, params["new_name"])
                elif effect == "deleted":
                    await self._manager.model_deleted(name)
            await send(message)

        return apply

    def _filtered(self, send: Send, identity: Identity, key: str) -> Send:
        start: Message | None = None
        chunks: list[bytes] = []

        async def collect(message: Message) -> None:
            nonlocal start
            if message["type"] == "http.response.start":
                start = message
                return
            if message["type"] != "http.response.body" or start is None:
                await send(message)
                return
            chunks.append(message.get("body", b""))
            if message.get("more_body", False):
                return
            body = b"".join(chunks)
            if start["status"] == 200:
                body = await self._readable_only(body, identity, key)
            headers = [(k, v) for k, v in start["headers"] if k.lower() != b"content-length"]
            headers.append((b"content-length", str(len(body)).encode()))
            await send({**start, "headers": headers})
            await send({"type": "http.response.body", "body": body})

        return collect

    async def _readable_only(self, body: bytes, identity: Identity, key: str) -> bytes:
        data = orjson.loads(body)
        items = data.get(key) or []
        names = {item.get("name") for item in items}
        readable = set(await self._access.readable(identity, sorted(n for n in names if n)))
        kept = [item for item in items if item.get("name") in readable]
        if kept or key in data:
            data[key] = kept
        return orjson.dumps(data)


def _describe(rule: RegistryRule) -> str:
    verbs = {
        PermissionLevel.CAN_READ: "read it",
        PermissionLevel.CAN_EDIT: "edit it or add versions",
        PermissionLevel.CAN_MANAGE_PRODUCTION_VERSIONS: "set or delete its aliases",
        PermissionLevel.CAN_MANAGE: "rename or delete it or its versions",
    }
    return verbs.get(rule.level, "do this")


def _params(scope: Scope, body: bytes) -> dict[str, Any]:
    """The request's parameters, read as MLflow reads them: the query string for a GET
    that has one, the JSON body otherwise (decoded twice when it is a JSON string)."""
    query = _query(scope)
    if scope["method"] in ("GET", "HEAD") and query:
        return dict(query)
    try:
        data = json.loads(body) if body.strip() else {}
        if isinstance(data, str):
            data = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


def _query(scope: Scope) -> dict[str, str]:
    """The query string's parameters (the first value of each), decoded as MLflow does."""
    raw = scope.get("query_string", b"").decode("utf-8", "replace")
    return {k: v[0] for k, v in parse_qs(raw, keep_blank_values=True).items()}


def _too_large(_: int) -> PayloadTooLargeError:
    return PayloadTooLargeError(f"Registry requests are limited to {_MAX_BODY} bytes.")


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay
