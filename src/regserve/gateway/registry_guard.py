"""The hosted MLflow server, behind regserve's permissions.

Wraps MLflow's ASGI app. Each request is classified by ``regserve.auth.mlflow_rules``
(method and path; an allow list, so anything unclassified is for admins only), its model and
version read the way MLflow reads them (``regserve.auth.registry_params``: one place, one
canonical spelling), the caller's level on that model checked, and the effects applied once
MLflow has answered 200, before the client hears it: a created model's creator gets
CAN_MANAGE; a renamed model keeps its ACL; a deleted one loses it; a deleted or renamed
model's serving stops; a created run or logged model is the caller's. Files follow
``registry_files.py`` (deny by default); search answers and logged models' version tags are
cut to the models the caller may read (``registry_answers.py``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from regserve.auth.artifact_rules import ArtifactRequest, artifact_request
from regserve.auth.graphql_rules import check_graphql
from regserve.auth.levels import PermissionLevel, level_for_stage
from regserve.auth.mlflow_rules import Access, RegistryRule, classify, normalize
from regserve.auth.registry_params import query_params, reads_query, registry_params
from regserve.auth.service import Identity
from regserve.errors import (
    InvalidParameterError,
    PayloadTooLargeError,
    PermissionDeniedError,
    RegServeError,
)
from regserve.gateway.bodies import read_body
from regserve.gateway.context import Services, scope_identity
from regserve.gateway.errors import send_error
from regserve.gateway.registry_answers import (
    MODEL_VERSIONS_TAG,
    created_id,
    error_shaped,
    readable_model_versions,
    readable_only,
    rewritten,
    without_hidden,
    without_server_tags,
)
from regserve.gateway.registry_files import RegistryFiles

__all__ = ["RegistryGuard", "RegistryLookups"]


@dataclass(frozen=True)
class RegistryLookups:
    """What the guard asks the registry (handed in by ``regserve.app``)."""

    stage_of: Callable[[str, str], Awaitable[str | None]]
    """The current stage of (model, version), or None when unknown."""
    sources_naming: Callable[[str], Awaitable[list[tuple[str, str]]]]
    """``(model name, source)`` of every version whose source or run names this run or
    logged model id."""
    artifact_root: Callable[[str, str], Awaitable[str | None]]
    """The artifact URI of a run (``run``) or logged model (``logged_model``), or None."""


_MAX_BODY = 4 * 1024 * 1024  # registry calls are small; artifacts are not read here
_API_PATHS = ("/api/", "/ajax-api/", "/get-artifact", "/model-versions/")
"""MLflow's API (not its web UI): error answers there get regserve's shape."""


class RegistryGuard:
    """MLflow's app, answering only what the caller may ask."""

    def __init__(self, app: ASGIApp, services: Services, lookups: RegistryLookups) -> None:
        self._app = app
        self._access = services.access
        self._manager = services.manager
        self._controller = services.controller
        self._lookups = lookups
        self._files = RegistryFiles(services.access, lookups)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        path = normalize(scope["path"])
        if path != scope["path"]:
            scope = {**scope, "path": path, "raw_path": path.encode()}
        rule = classify(scope["method"], path)
        if path.startswith(_API_PATHS):
            send = error_shaped(send)
        try:
            await self._handle(scope, receive, send, rule)
        except RegServeError as error:
            await send_error(send, error)

    async def _handle(self, scope: Scope, receive: Receive, send: Send, rule: RegistryRule) -> None:
        identity = scope_identity(scope)
        if rule.access is Access.ADMIN:
            self._access.require_admin(identity, f"call {scope['method']} {scope['path']}")
        if rule.access in (Access.ADMIN, Access.ANY):
            await self._app(scope, receive, send)
        elif rule.access is Access.ARTIFACT:
            await self._files.authorize(identity, _artifact_request(scope))
            await self._app(scope, receive, send)
        elif rule.access is Access.SEARCH:
            if not identity.is_admin:
                send = self._searched(send, identity, rule.filter_key or "")
            await self._app(scope, receive, send)
        elif rule.access is Access.OWNED:
            await self._app(scope, receive, self._owned(send, identity, rule.effect or ""))
        elif rule.access in (Access.LOGGED_MODEL, Access.LOGGED_MODEL_READ):
            await self._logged_model(scope, receive, send, identity, rule)
        elif rule.access is Access.GRAPHQL:
            await self._graphql(scope, receive, send, identity)
        else:
            await self._model_call(scope, receive, send, identity, rule)

    async def _model_call(
        self, scope: Scope, receive: Receive, send: Send, identity: Identity, rule: RegistryRule
    ) -> None:
        body = await _body(scope, receive)
        params = registry_params(scope["method"], scope.get("query_string", b""), body)
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
        if rule.access is Access.CREATE_VERSION:
            await self._files.authorize_source(identity, params)

    async def _logged_model(
        self, scope: Scope, receive: Receive, send: Send, identity: Identity, rule: RegistryRule
    ) -> None:
        if identity.is_admin:
            await self._app(scope, receive, send)
            return
        body = await _body(scope, receive)
        if rule.access is Access.LOGGED_MODEL_READ:
            if MODEL_VERSIONS_TAG.lower().encode() in body.lower():
                raise PermissionDeniedError(
                    f"Only admins may search by the '{MODEL_VERSIONS_TAG}' tag: it names "
                    "registered models. Search by other fields."
                )
        else:
            sent = await self._logged_model_change(scope, identity, rule, body)
            if sent != body:
                scope, body = _with_body(scope, sent), sent
        await self._app(scope, _replay(body, receive), self._redacted(send, identity))

    async def _graphql(
        self, scope: Scope, receive: Receive, send: Send, identity: Identity
    ) -> None:
        if identity.is_admin:
            await self._app(scope, receive, send)
            return
        body = await read_body(receive, _MAX_BODY, _too_large)
        check_graphql(body)

        async def rewrite(status: int, answer: bytes) -> bytes:
            if status != 200:
                return answer
            return await readable_model_versions(answer, self._access, identity)

        await self._app(scope, _replay(body, receive), rewritten(send, rewrite))

    async def _logged_model_change(
        self, scope: Scope, identity: Identity, rule: RegistryRule, body: bytes
    ) -> bytes:
        """The body to send on, once ``identity`` may change the logged model. MLflow's server
        keeps its ``mlflow.modelVersions`` tag itself (MLflow's client sets it too, from the
        value it read, which names only readable models): a caller's value is dropped."""
        if scope["method"] == "DELETE" and scope["path"].endswith("/" + MODEL_VERSIONS_TAG):
            raise PermissionDeniedError(
                f"The registry keeps the '{MODEL_VERSIONS_TAG}' tag; only admins may delete it."
            )
        if scope["method"] == "PATCH" and scope["path"].endswith("/tags"):
            body, changes = without_server_tags(body)
            if not changes:
                return body  # only the registry's own tag: nothing changes
        served = rule.level is PermissionLevel.CAN_MANAGE
        await self._files.require_logged_model_change(identity, rule.owner_id, served)
        return body

    # -- answers -----------------------------------------------------------------------------

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
                await self._apply(effect, identity, name, params)
            await send(message)

        return apply

    async def _apply(
        self, effect: str, identity: Identity, name: str, params: dict[str, Any]
    ) -> None:
        if effect == "created":
            await self._manager.grant_creator(identity, name)
        elif effect == "renamed" and isinstance(params.get("new_name"), str):
            await self._manager.model_renamed(name, params["new_name"])
            reason = f"registered model '{name}' was renamed to '{params['new_name']}'"
            await self._controller.model_gone(name, reason, identity.name)
        elif effect == "deleted":
            await self._manager.model_deleted(name)
            reason = f"registered model '{name}' was deleted"
            await self._controller.model_gone(name, reason, identity.name)

    def _searched(self, send: Send, identity: Identity, key: str) -> Send:
        async def rewrite(status: int, body: bytes) -> bytes:
            if status != 200:
                return body
            return await readable_only(body, self._access, identity, key)

        return rewritten(send, rewrite)

    def _redacted(self, send: Send, identity: Identity) -> Send:
        async def rewrite(status: int, body: bytes) -> bytes:
            if status != 200:
                return body
            return await without_hidden(body, self._access, identity)

        return rewritten(send, rewrite)

    def _owned(self, send: Send, identity: Identity, kind: str) -> Send:
        async def record(status: int, body: bytes) -> bytes:
            if status == 200 and (object_id := created_id(body, kind)) is not None:
                await self._manager.record_owner(identity, kind, object_id)
            if status != 200 or identity.is_admin:
                return body
            return await without_hidden(body, self._access, identity)

        return rewritten(send, record)


def _describe(rule: RegistryRule) -> str:
    verbs = {
        PermissionLevel.CAN_READ: "read it",
        PermissionLevel.CAN_EDIT: "edit it or add versions",
        PermissionLevel.CAN_MANAGE_PRODUCTION_VERSIONS: "set or delete its aliases",
        PermissionLevel.CAN_MANAGE: "rename or delete it or its versions",
    }
    return verbs.get(rule.level, "do this")


def _artifact_request(scope: Scope) -> ArtifactRequest:
    query = query_params(scope.get("query_string", b""))
    return artifact_request(scope["method"], scope["path"], query)


async def _body(scope: Scope, receive: Receive) -> bytes:
    """The request body, unless MLflow reads this request's parameters from its query."""
    if reads_query(scope["method"], scope.get("query_string", b"")):
        return b""
    return await read_body(receive, _MAX_BODY, _too_large)


def _with_body(scope: Scope, body: bytes) -> Scope:
    """``scope`` for a request whose body was rewritten: its Content-Length follows."""
    headers = [(k, v) for k, v in scope["headers"] if k.lower() != b"content-length"]
    return {**scope, "headers": [*headers, (b"content-length", str(len(body)).encode())]}


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
