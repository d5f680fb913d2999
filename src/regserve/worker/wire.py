"""The framed messages between the gateway and a worker (standard library only).

Every frame is a fixed header ``!IQB`` (payload length, request id, kind) and a payload:

- ``REQUEST``:  ``!H`` content-type length, content type (latin-1), raw request body.
- ``RESPONSE``: ``!HH`` HTTP status, content-type length, content type, raw response body.
- ``PING``:     empty; the worker answers ``PONG`` with a JSON object describing itself.

A shared worker (``--shared``: several versions of one model in one process) also takes:

- ``BIND``:     the version (UTF-8); the connection's later REQUESTs and PINGs are that
  version's. Sent once, first, by a version's connection; no answer.
- ``LOAD``:     JSON ``{"version", "model_path", "batching", "max_batch_size",
  "max_batch_wait_ms"}``; answered by ``REPLY`` once the model is loaded (or failed to).
- ``UNLOAD``:   the version (UTF-8); answered by ``REPLY`` once its in-flight requests finished.
- ``REPLY``:    JSON ``{"ok": bool, "error": str}``.

Request ids are chosen by the gateway and echoed back, so many requests can be in flight on
one connection and answered out of order.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from typing import NamedTuple

__all__ = [
    "BIND",
    "HEADER",
    "LOAD",
    "PING",
    "PONG",
    "PROTOCOL_VERSION",
    "REPLY",
    "REQUEST",
    "RESPONSE",
    "UNLOAD",
    "Frame",
    "FrameReader",
    "Request",
    "Response",
    "decode_request",
    "decode_response",
    "encode_frame",
    "encode_request",
    "encode_response",
]

PROTOCOL_VERSION = 1
HEADER = struct.Struct("!IQB")
_CT = struct.Struct("!H")
_STATUS_CT = struct.Struct("!HH")
MAX_FRAME = 1 << 31

REQUEST = 1
RESPONSE = 2
PING = 3
PONG = 4
BIND = 5
LOAD = 6
UNLOAD = 7
REPLY = 8


class Frame(NamedTuple):
    request_id: int
    kind: int
    payload: bytes


class Request(NamedTuple):
    content_type: str | None
    body: bytes


class Response(NamedTuple):
    status: int
    content_type: str
    body: bytes


def encode_frame(request_id: int, kind: int, payload: bytes) -> bytes:
    return HEADER.pack(len(payload), request_id, kind) + payload


def encode_request(request_id: int, content_type: str | None, body: bytes) -> bytes:
    # An absent Content-Type travels as an empty string; the worker turns it back into None.
    ct = (content_type or "").encode("latin-1", "replace")
    payload = b"".join((_CT.pack(len(ct)), ct, body))
    return encode_frame(request_id, REQUEST, payload)


def decode_request(payload: bytes) -> Request:
    (ct_len,) = _CT.unpack_from(payload, 0)
    start = _CT.size
    ct = payload[start : start + ct_len].decode("latin-1")
    return Request(ct or None, payload[start + ct_len :])


def encode_response(request_id: int, status: int, content_type: str, body: bytes) -> bytes:
    ct = content_type.encode("latin-1", "replace")
    payload = b"".join((_STATUS_CT.pack(status, len(ct)), ct, body))
    return encode_frame(request_id, RESPONSE, payload)


def decode_response(payload: bytes) -> Response:
    status, ct_len = _STATUS_CT.unpack_from(payload, 0)
    start = _STATUS_CT.size
    ct = payload[start : start + ct_len].decode("latin-1")
    return Response(status, ct, payload[start + ct_len :])


class FrameReader:
    """Accumulates bytes from a stream and yields the complete frames in them."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> Iterator[Frame]:
        self._buffer += data
        buf = self._buffer
        offset = 0
        while len(buf) - offset >= HEADER.size:
            length, request_id, kind = HEADER.unpack_from(buf, offset)
            end = offset + HEADER.size + length
            if len(buf) < end:
                break
            yield Frame(request_id, kind, bytes(buf[offset + HEADER.size : end]))
            offset = end
        if offset:
            del buf[:offset]
