"""Routes whose body is a JSON object, read as JSON whatever ``curl -d`` calls it.

``curl -d '{"registered_model_name": "fraud"}' URL`` sends the body as
``application/x-www-form-urlencoded``, and many scripts send no ``Content-Type`` at all.
FastAPI reads a body as JSON only under a JSON content type, and otherwise refuses it with a
validation message that does not say why. On regserve's own JSON routes (the control API,
tokens, principals, permissions) a body without a content type, or sent as form data or
plain text, is read as JSON when it is JSON; when it is not, the answer says what to send.

Scoring URLs do not go through here: they keep MLflow's scoring protocol (and its 415s).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.routing import APIRoute
from starlette.types import Message

from regserve.errors import BadRequestError

__all__ = ["LENIENT_TYPES", "SEND_JSON", "JsonBodyRoute", "as_json_request", "media_type"]

LENIENT_TYPES = frozenset({"", "application/x-www-form-urlencoded", "text/plain"})
"""Media types (``""``: none sent) under which a JSON body is still read as JSON: what curl,
HTML forms and bare HTTP libraries send when nobody names a type."""

_JSON = b"application/json"
SEND_JSON = (  # what every refusal of a JSON route's body ends with
    "send a JSON object with the header 'Content-Type: application/json' "
    "(curl -H 'Content-Type: application/json' -d '{...}' URL)."
)

Handler = Callable[[Request], Coroutine[Any, Any, Response]]


class JsonBodyRoute(APIRoute):
    """An ``APIRoute`` that reads a JSON-object body under a missing or generic content type
    as JSON, and refuses a body that is not JSON with a 400 naming the header to send."""

    def get_route_handler(self) -> Handler:
        handler: Handler = super().get_route_handler()
        if self.body_field is None:  # no JSON body: nothing to read differently
            return handler

        async def read_as_json(request: Request) -> Response:
            return await handler(await as_json_request(request))

        return read_as_json


def media_type(content_type: str | None) -> str:
    """``"application/json"`` of ``"application/json; charset=utf-8"``; ``""`` for none."""
    return (content_type or "").split(";", 1)[0].strip().lower()


async def as_json_request(request: Request) -> Request:
    """``request``, or the same request labelled ``application/json`` when its body is JSON
    sent under a type in :data:`LENIENT_TYPES`. A body under another type, or one that is not
    JSON (form fields, text), is a :class:`BadRequestError` saying what to send."""
    sent = media_type(request.headers.get("content-type"))
    if sent == "application/json" or (sent.startswith("application/") and sent.endswith("+json")):
        return request  # FastAPI reads these (and says when they are not valid JSON)
    body = await request.body()
    if not body:
        return request  # FastAPI's "body: Field required" names what is missing
    shown = f"Content-Type: {sent}" if sent else "no Content-Type"
    if sent not in LENIENT_TYPES:
        raise BadRequestError(f"This route takes a JSON object, not {shown}: {SEND_JSON}")
    try:
        json.loads(body)  # as FastAPI will (Request.json), so that both agree on what is JSON
    except ValueError:  # not JSON, or not UTF-8
        not_json = f"The request body is not JSON (it came with {shown}): {SEND_JSON}"
        raise BadRequestError(not_json) from None
    headers = [(k, v) for k, v in request.scope["headers"] if k != b"content-type"]
    scope = {**request.scope, "headers": [*headers, (b"content-type", _JSON)]}
    return Request(scope, _replay(body))


def _replay(body: bytes) -> Callable[[], Coroutine[Any, Any, Message]]:
    """An ASGI ``receive`` that gives ``body`` (already read) once more."""
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return receive
