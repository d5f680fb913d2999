"""The framed messages between the gateway and a worker (standard library only).

Every frame is a fixed header ``!IQB`` (payload length, request id, :class:`Kind`) and a
payload:

- ``REQUEST``:  ``!H`` content-type length, content type (latin-1), raw request body.
- ``RESPONSE``: ``!HH`` HTTP status, content-type length, content type, raw response body.
- ``PING``:     empty; the worker answers ``PONG`` with a JSON object describing itself
  (:class:`Pong`).

A shared worker (``--shared``: several versions of one model in one process) also takes:

- ``BIND``:     the version (UTF-8); the connection's later REQUESTs and PINGs are that
  version's. Sent once, first, by a version's connection; no answer.
- ``LOAD``:     JSON :class:`Load` ``{"version", "model_path", "batching", "max_batch_size",
  "max_batch_wait_ms", "limits"}`` (``limits``: the input limits, ``limits.InputLimits``);
  answered by ``REPLY`` once the model is loaded (or failed to).
- ``UNLOAD``:   the version (UTF-8); answered by ``REPLY`` once its in-flight requests finished.
- ``REPLY``:    JSON :class:`Reply` ``{"ok": bool, "error": str}``, and what was made
  (``pid``) or found (``code``) when the request asks for it.

A template worker (``--template``: it loads the model once and forks the version's replicas,
:mod:`.template`) takes only these on its control socket, each answered by ``REPLY``:

- ``FORK``:     JSON :class:`Fork` ``{"socket", "orphan_timeout"}``: a replica serving on
  ``socket``; ``pid``: the replica's.
- ``STANDBY``:  JSON :class:`Standby` ``{"socket"}``: a copy of the template listening on
  ``socket``; ``pid``: the standby's.
- ``EXIT``:     JSON :class:`Exit` ``{"pid"}``: ``code``: how that forked process ended (as
  ``os.waitstatus_to_exitcode``), or null when it runs or is not the template's.

A warm process (``--warm``: MLflow and the flavor's libraries imported, no model;
:mod:`.warm`) takes ``EXIT`` as a template does, and:

- ``TEMPLATE``: JSON :class:`TemplateFork` ``{"argv"}``: a template worker forked from it,
  started as ``python -m regserve.worker *argv`` would be (``--template`` among them); the
  frame carries one file descriptor (``SCM_RIGHTS``), the version's log, which becomes the
  template's output; ``pid``: the template's.

Request ids are chosen by the gateway and echoed back, so many requests can be in flight on
one connection and answered out of order. A frame of a kind this end does not know is read
whole (the stream stays in step) and raised as :class:`UnknownKindError`.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Iterator
from enum import IntEnum
from typing import Any, NamedTuple, TypedDict, cast

__all__ = [
    "HEADER",
    "PROTOCOL_VERSION",
    "TEMPLATE_PROTOCOL",
    "WARM_PROTOCOL",
    "Exit",
    "Fork",
    "Frame",
    "FrameReader",
    "Kind",
    "Load",
    "Pong",
    "Reply",
    "Request",
    "Response",
    "Standby",
    "TemplateFork",
    "UnknownKindError",
    "WireError",
    "decode_exit",
    "decode_fork",
    "decode_load",
    "decode_pong",
    "decode_reply",
    "decode_request",
    "decode_response",
    "decode_standby",
    "decode_template_fork",
    "encode_exit",
    "encode_fork",
    "encode_frame",
    "encode_load",
    "encode_pong",
    "encode_reply",
    "encode_request",
    "encode_response",
    "encode_standby",
    "encode_template_fork",
]

PROTOCOL_VERSION = 1
TEMPLATE_PROTOCOL = 1
"""What a template's control socket speaks (the FORK, STANDBY and EXIT frames); a template
whose record names another (or none: it spoke JSON lines) is not adopted."""
WARM_PROTOCOL = 1
"""What a warm process's control socket speaks (the TEMPLATE and EXIT frames); a warm process
whose record names another is not adopted."""
HEADER = struct.Struct("!IQB")
_CT = struct.Struct("!H")
_STATUS_CT = struct.Struct("!HH")
MAX_FRAME = 1 << 31


class Kind(IntEnum):
    """What a frame carries; the header's third field."""

    REQUEST = 1
    RESPONSE = 2
    PING = 3
    PONG = 4
    BIND = 5
    LOAD = 6
    UNLOAD = 7
    REPLY = 8
    FORK = 9
    STANDBY = 10
    EXIT = 11
    TEMPLATE = 12


_KINDS = {kind.value: kind for kind in Kind}  # a dict lookup: cheaper than Kind(value)


class WireError(ValueError):
    """A frame or a frame's body this end cannot read."""


class UnknownKindError(WireError):
    """A frame of a kind this end does not know (its payload was skipped)."""

    def __init__(self, request_id: int, kind: int) -> None:
        super().__init__(
            f"unknown frame kind {kind} (request id {request_id}); "
            f"protocol {PROTOCOL_VERSION} knows {', '.join(f'{k.value} {k.name}' for k in Kind)}"
        )
        self.request_id = request_id
        self.kind = kind


class _PongBase(TypedDict):
    pid: int
    state: str
    """``ready``, ``stopping``, or for a version a shared worker has not loaded, ``not loaded``."""
    name: str | None
    version: str | None
    protocol: int
    mlflow_version: str
    python: str


class Pong(_PongBase, total=False):
    """The PONG body: who the worker is and whether it serves."""

    batching: dict[str, Any]
    """A one-model worker's batcher: settings and counts (``batch_sizes``, ``queued``...)."""
    shared: bool
    """A shared worker's control connection: True..."""
    versions: dict[str, str]
    """...and the state of each version it holds."""


class _LoadBase(TypedDict):
    version: str
    model_path: str


class Load(_LoadBase, total=False):
    """The LOAD body: a version for a shared worker to load, and how to serve it."""

    batching: str
    max_batch_size: int
    max_batch_wait_ms: float
    limits: dict[str, Any]


class _ReplyBase(TypedDict):
    ok: bool
    error: str


class Reply(_ReplyBase, total=False):
    """The REPLY body: whether a LOAD, UNLOAD, FORK, STANDBY, TEMPLATE or EXIT succeeded (if
    not, why), and its result."""

    pid: int
    """FORK, STANDBY, TEMPLATE: the process forked."""
    code: int | None
    """EXIT: the process's exit code (null: it runs, or is unknown)."""


class Fork(TypedDict):
    """The FORK body: where the replica serves, and when it stops with nobody connected."""

    socket: str
    orphan_timeout: float


class Standby(TypedDict):
    """The STANDBY body: the standby template's control socket."""

    socket: str


class Exit(TypedDict):
    """The EXIT body: the forked process asked about."""

    pid: int


class TemplateFork(TypedDict):
    """The TEMPLATE body: the template worker's command-line arguments (after ``-m
    regserve.worker``)."""

    argv: list[str]


class Frame(NamedTuple):
    request_id: int
    kind: Kind
    payload: bytes


class Request(NamedTuple):
    content_type: str | None
    body: bytes


class Response(NamedTuple):
    status: int
    content_type: str
    body: bytes


def encode_frame(request_id: int, kind: Kind, payload: bytes) -> bytes:
    return HEADER.pack(len(payload), request_id, kind) + payload


def encode_request(request_id: int, content_type: str | None, body: bytes) -> bytes:
    # An absent Content-Type travels as an empty string; the worker turns it back into None.
    ct = (content_type or "").encode("latin-1", "replace")
    payload = b"".join((_CT.pack(len(ct)), ct, body))
    return encode_frame(request_id, Kind.REQUEST, payload)


def decode_request(payload: bytes) -> Request:
    (ct_len,) = _CT.unpack_from(payload, 0)
    start = _CT.size
    ct = payload[start : start + ct_len].decode("latin-1")
    return Request(ct or None, payload[start + ct_len :])


def encode_response(request_id: int, status: int, content_type: str, body: bytes) -> bytes:
    ct = content_type.encode("latin-1", "replace")
    payload = b"".join((_STATUS_CT.pack(status, len(ct)), ct, body))
    return encode_frame(request_id, Kind.RESPONSE, payload)


def decode_response(payload: bytes) -> Response:
    status, ct_len = _STATUS_CT.unpack_from(payload, 0)
    start = _STATUS_CT.size
    ct = payload[start : start + ct_len].decode("latin-1")
    return Response(status, ct, payload[start + ct_len :])


def encode_pong(request_id: int, pong: Pong) -> bytes:
    return encode_frame(request_id, Kind.PONG, json.dumps(pong).encode("utf-8"))


def decode_pong(payload: bytes) -> Pong:
    return cast(Pong, _json_object(payload, Kind.PONG))


def encode_load(request_id: int, load: Load) -> bytes:
    return encode_frame(request_id, Kind.LOAD, json.dumps(load).encode("utf-8"))


def decode_load(payload: bytes) -> Load:
    return cast(Load, _json_object(payload, Kind.LOAD))


def encode_reply(request_id: int, reply: Reply) -> bytes:
    return encode_frame(request_id, Kind.REPLY, json.dumps(reply).encode("utf-8"))


def decode_reply(payload: bytes) -> Reply:
    return cast(Reply, _json_object(payload, Kind.REPLY))


def encode_fork(request_id: int, fork: Fork) -> bytes:
    return encode_frame(request_id, Kind.FORK, json.dumps(fork).encode("utf-8"))


def decode_fork(payload: bytes) -> Fork:
    return cast(Fork, _json_object(payload, Kind.FORK))


def encode_standby(request_id: int, standby: Standby) -> bytes:
    return encode_frame(request_id, Kind.STANDBY, json.dumps(standby).encode("utf-8"))


def decode_standby(payload: bytes) -> Standby:
    return cast(Standby, _json_object(payload, Kind.STANDBY))


def encode_exit(request_id: int, query: Exit) -> bytes:
    return encode_frame(request_id, Kind.EXIT, json.dumps(query).encode("utf-8"))


def decode_exit(payload: bytes) -> Exit:
    return cast(Exit, _json_object(payload, Kind.EXIT))


def encode_template_fork(request_id: int, fork: TemplateFork) -> bytes:
    return encode_frame(request_id, Kind.TEMPLATE, json.dumps(fork).encode("utf-8"))


def decode_template_fork(payload: bytes) -> TemplateFork:
    body = _json_object(payload, Kind.TEMPLATE)
    argv = body.get("argv")
    if not isinstance(argv, list) or not all(isinstance(a, str) for a in argv):
        raise WireError("a TEMPLATE body's argv is a list of strings")
    return {"argv": argv}


def _json_object(payload: bytes, kind: Kind) -> dict[str, Any]:
    try:
        body = json.loads(payload)
    except ValueError as exc:  # UnicodeDecodeError too
        raise WireError(f"a {kind.name} body is not JSON: {exc}") from None
    if not isinstance(body, dict):
        raise WireError(f"a {kind.name} body is a JSON object, not {type(body).__name__}")
    return body


class FrameReader:
    """Accumulates bytes from a stream and yields the complete frames in them.

    A frame of an unknown kind raises :class:`UnknownKindError` once the frames before it
    were yielded; it is consumed, so feeding ``b""`` goes on with the frames after it.
    """

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> Iterator[Frame]:
        self._buffer += data
        buf = self._buffer
        offset = 0
        while len(buf) - offset >= HEADER.size:
            length, request_id, value = HEADER.unpack_from(buf, offset)
            end = offset + HEADER.size + length
            if len(buf) < end:
                break
            kind = _KINDS.get(value)
            if kind is None:
                del buf[:end]
                raise UnknownKindError(request_id, value)
            yield Frame(request_id, kind, bytes(buf[offset + HEADER.size : end]))
            offset = end
        if offset:
            del buf[:offset]
