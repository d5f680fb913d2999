"""Answers of the hosted MLflow server, read or cut before the caller hears them.

MLflow's answers to registry calls are small JSON documents; the guard holds one whole
(:func:`rewritten`), then passes it on, changed or not, with the right ``content-length``:
to cut search results to readable models, to drop the names of models the caller may not read
from a logged model's ``mlflow.modelVersions`` tag, and to learn the id of a run or logged
model just created (its owner is recorded before the client hears of it). Error answers of
MLflow's API get regserve's ``{"error_code", "message"}`` shape where they lack it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from starlette.types import Message, Send

from regserve.auth.artifact_rules import RUN
from regserve.auth.graphql_rules import MODEL_VERSIONS_FIELD
from regserve.auth.service import AccessService, Identity
from regserve.gateway.errors import ForeignError, render_error

__all__ = [
    "MODEL_VERSIONS_TAG",
    "created_id",
    "error_shaped",
    "readable_model_versions",
    "readable_only",
    "rewritten",
    "without_hidden",
    "without_server_tags",
]

MODEL_VERSIONS_TAG = "mlflow.modelVersions"
"""MLflow's tag on a logged model listing the registered versions made from it (JSON)."""

Rewrite = Callable[[int, bytes], Awaitable[bytes]]
_HTML_TEXT = (
    re.compile(r"<p>(.*?)</p>", re.S | re.I),
    re.compile(r"<title>(.*?)</title>", re.S | re.I),
)
"""Where Werkzeug's error pages say what went wrong, best first."""
_MAX_MESSAGE = 1000


def rewritten(send: Send, rewrite: Rewrite) -> Send:
    """A ``send`` that holds the whole answer and sends ``rewrite(status, body)`` instead."""

    async def whole(status: int, _: list[tuple[bytes, bytes]], body: bytes) -> bytes:
        return await rewrite(status, body)

    return _held(send, lambda _: True, whole)


def _held(
    send: Send,
    hold: Callable[[int], bool],
    rewrite: Callable[[int, list[tuple[bytes, bytes]], bytes], Awaitable[bytes]],
) -> Send:
    """A ``send`` that holds the answers whose status ``hold`` accepts and sends them
    rewritten (with their Content-Length); the others pass as they come."""
    start: Message | None = None
    chunks: list[bytes] = []

    async def collect(message: Message) -> None:
        nonlocal start
        if message["type"] == "http.response.start" and hold(message["status"]):
            start = message
            return
        if message["type"] != "http.response.body" or start is None:
            await send(message)
            return
        chunks.append(message.get("body", b""))
        if message.get("more_body", False):
            return
        headers = [(k, v) for k, v in start["headers"] if k.lower() != b"content-length"]
        body = await rewrite(start["status"], headers, b"".join(chunks))
        headers.append((b"content-length", str(len(body)).encode()))
        await send({**start, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    return collect


def error_shaped(send: Send) -> Send:
    """A ``send`` that passes answers below 400 on as they are, and gives MLflow's other
    error answers (FastAPI's ``{"detail": ...}``, Werkzeug's HTML pages) regserve's shape:
    ``{"error_code", "message"}`` with the same status."""

    async def reshape(status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> bytes:
        return _regserve_error(status, headers, body) or body

    return _held(send, lambda status: status >= 400, reshape)


def _regserve_error(status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> bytes | None:
    """regserve's error body for an MLflow error answer, None when it has that shape."""
    if not body.strip():
        return None
    data = _json(body)
    if data is not None and "error_code" in data:
        return None
    if data is not None:
        detail = data.get("detail", data.get("message", data))
        message = detail if isinstance(detail, str) else json.dumps(detail)
    else:
        text = body.decode("utf-8", "replace")
        found = next((m for m in (p.search(text) for p in _HTML_TEXT) if m), None)
        message = re.sub(r"<[^>]+>", "", found.group(1)) if found else text
    headers[:] = [(k, v) for k, v in headers if k.lower() != b"content-type"]
    headers.append((b"content-type", b"application/json"))
    return render_error(ForeignError(message.strip()[:_MAX_MESSAGE], status)).body


async def readable_only(body: bytes, access: AccessService, identity: Identity, key: str) -> bytes:
    """A search answer whose ``key`` list keeps only the models ``identity`` may read."""
    data = _json(body)
    if data is None:
        return body
    items = data.get(key) or []
    names = {item.get("name") for item in items if isinstance(item, dict)}
    readable = set(await access.readable(identity, sorted(n for n in names if isinstance(n, str))))
    kept = [item for item in items if isinstance(item, dict) and item.get("name") in readable]
    if kept or key in data:
        data[key] = kept
    return orjson.dumps(data)


async def readable_model_versions(body: bytes, access: AccessService, identity: Identity) -> bytes:
    """A GraphQL answer whose ``modelVersions`` lists (a run's registered versions) keep only
    the versions of models ``identity`` may read; a version without its ``name`` is cut."""
    data = _json(body)
    if data is None:
        return body
    lists = _keyed_lists(data, MODEL_VERSIONS_FIELD)
    if not lists:
        return body
    names = {v.get("name") for found in lists for v in found if isinstance(v, dict)}
    readable = set(await access.readable(identity, sorted(n for n in names if isinstance(n, str))))
    for found in lists:
        found[:] = [v for v in found if isinstance(v, dict) and v.get("name") in readable]
    return orjson.dumps(data)


def _keyed_lists(data: Any, key: str) -> list[list[Any]]:
    """Every list held under ``key`` anywhere in a JSON document."""
    found: list[list[Any]] = []
    if isinstance(data, dict):
        for name, value in data.items():
            if name == key and isinstance(value, list):
                found.append(value)
            else:
                found.extend(_keyed_lists(value, key))
    elif isinstance(data, list):
        for item in data:
            found.extend(_keyed_lists(item, key))
    return found


async def without_hidden(body: bytes, access: AccessService, identity: Identity) -> bytes:
    """A logged model answer whose ``mlflow.modelVersions`` tags name only the registered
    models ``identity`` may read (the others are hidden, their existence included)."""
    data = _json(body)
    if data is None:
        return body
    tags = [t for t in _tag_lists(data) if t.get("key") == MODEL_VERSIONS_TAG]
    if not tags:
        return body
    for tag in tags:
        tag["value"] = await _readable_versions(tag.get("value"), access, identity)
    return orjson.dumps(data)


def without_server_tags(body: bytes) -> tuple[bytes, bool]:
    """A logged model's tags update without any ``mlflow.modelVersions`` tag, and whether it
    still sets a tag."""
    data = _json(body)
    tags = data.get("tags") if data is not None else None
    if data is None or not isinstance(tags, list):
        return body, True
    kept = [t for t in tags if not (isinstance(t, dict) and t.get("key") == MODEL_VERSIONS_TAG)]
    if len(kept) == len(tags):
        return body, True
    data["tags"] = kept
    return orjson.dumps(data), bool(kept)


def created_id(body: bytes, kind: str) -> str | None:
    """The id of the run (``run.info.run_id``) or logged model (``model.info.model_id``)
    an answer to a create call names."""
    data = _json(body) or {}
    key, field = ("run", "run_id") if kind == RUN else ("model", "model_id")
    holder = data.get(key)
    info = holder.get("info") if isinstance(holder, dict) else None
    found = info.get(field) if isinstance(info, dict) else None
    return found if isinstance(found, str) and found else None


async def _readable_versions(value: object, access: AccessService, identity: Identity) -> str:
    try:
        entries = json.loads(value) if isinstance(value, str) else []
    except ValueError:
        entries = []
    if not isinstance(entries, list):
        entries = []
    entries = [e for e in entries if isinstance(e, dict) and isinstance(e.get("name"), str)]
    readable = set(await access.readable(identity, sorted({e["name"] for e in entries})))
    return json.dumps([e for e in entries if e["name"] in readable])


def _tag_lists(data: Any) -> list[dict[str, Any]]:
    """Every ``{"key", "value"}`` entry of every ``tags`` list in a JSON document."""
    found: list[dict[str, Any]] = []
    if isinstance(data, dict):
        for key, value in data.items():
            if key == "tags" and isinstance(value, list):
                found.extend(t for t in value if isinstance(t, dict))
            else:
                found.extend(_tag_lists(value))
    elif isinstance(data, list):
        for item in data:
            found.extend(_tag_lists(item))
    return found


def _json(body: bytes) -> dict[str, Any] | None:
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    return data if isinstance(data, dict) else None
