"""The wire format in-process: frame kinds and typed bodies survive encode then decode."""

from __future__ import annotations

import pytest

from regserve.worker import wire


def _one_frame(data: bytes) -> wire.Frame:
    (frame,) = wire.FrameReader().feed(data)
    return frame


def test_kinds_keep_their_numbers_on_the_wire() -> None:
    numbers = {kind.name: int(kind) for kind in wire.Kind}
    assert numbers == {
        "REQUEST": 1,
        "RESPONSE": 2,
        "PING": 3,
        "PONG": 4,
        "BIND": 5,
        "LOAD": 6,
        "UNLOAD": 7,
        "REPLY": 8,
        "FORK": 9,
        "STANDBY": 10,
        "EXIT": 11,
        "TEMPLATE": 12,
    }
    for kind in wire.Kind:
        frame = _one_frame(wire.encode_frame(7, kind, b"x"))
        assert (frame.request_id, frame.kind, frame.payload) == (7, kind, b"x")
        assert type(frame.kind) is wire.Kind
        assert wire.encode_frame(7, kind, b"") == wire.HEADER.pack(0, 7, int(kind))


def test_request_and_response_round_trip() -> None:
    frame = _one_frame(wire.encode_request(1, "application/json", b'{"a": 1}'))
    assert frame.kind is wire.Kind.REQUEST
    assert wire.decode_request(frame.payload) == ("application/json", b'{"a": 1}')
    assert wire.decode_request(_one_frame(wire.encode_request(2, None, b"")).payload) == (None, b"")
    frame = _one_frame(wire.encode_response(3, 400, "text/plain", b"no"))
    assert frame.kind is wire.Kind.RESPONSE
    assert wire.decode_response(frame.payload) == wire.Response(400, "text/plain", b"no")


def test_typed_bodies_round_trip() -> None:
    pong: wire.Pong = {
        "pid": 42,
        "state": "ready",
        "name": "m",
        "version": None,
        "protocol": 1,
        "mlflow_version": "3.1.0",
        "python": "3.11.7",
        "shared": True,
        "versions": {"1": "ready"},
    }
    load: wire.Load = {
        "version": "2",
        "model_path": "/models/m/2",
        "batching": "auto",
        "max_batch_size": 64,
        "max_batch_wait_ms": 0.5,
        "limits": {"max_rows": 10},
    }
    reply: wire.Reply = {"ok": False, "error": "ValueError: no"}
    forked: wire.Reply = {"ok": True, "error": "", "pid": 1234}
    exited: wire.Reply = {"ok": True, "error": "", "code": None}
    fork: wire.Fork = {"socket": "/run/r1.sock", "orphan_timeout": 30.0}
    standby: wire.Standby = {"socket": "/run/t.s1.sock"}
    query: wire.Exit = {"pid": 1234}
    template: wire.TemplateFork = {"argv": ["--template", "--socket", "/run/t.sock"]}
    cases = [
        (wire.encode_pong(1, pong), wire.Kind.PONG, wire.decode_pong, pong),
        (wire.encode_load(2, load), wire.Kind.LOAD, wire.decode_load, load),
        (wire.encode_reply(3, reply), wire.Kind.REPLY, wire.decode_reply, reply),
        (wire.encode_reply(4, forked), wire.Kind.REPLY, wire.decode_reply, forked),
        (wire.encode_reply(5, exited), wire.Kind.REPLY, wire.decode_reply, exited),
        (wire.encode_fork(6, fork), wire.Kind.FORK, wire.decode_fork, fork),
        (wire.encode_standby(7, standby), wire.Kind.STANDBY, wire.decode_standby, standby),
        (wire.encode_exit(8, query), wire.Kind.EXIT, wire.decode_exit, query),
        (
            wire.encode_template_fork(9, template),
            wire.Kind.TEMPLATE,
            wire.decode_template_fork,
            template,
        ),
    ]
    for data, kind, decode, body in cases:
        frame = _one_frame(data)
        assert frame.kind is kind
        assert decode(frame.payload) == body


def test_a_body_that_is_not_a_json_object_is_a_wire_error() -> None:
    with pytest.raises(wire.WireError, match="REPLY body is a JSON object, not list"):
        wire.decode_reply(b"[]")
    with pytest.raises(wire.WireError, match="PONG body is not JSON"):
        wire.decode_pong(b"\xff")


def test_an_unknown_kind_is_rejected_and_the_stream_stays_in_step() -> None:
    reader = wire.FrameReader()
    data = (
        wire.encode_frame(1, wire.Kind.PING, b"")
        + wire.HEADER.pack(3, 2, 99)
        + b"???"
        + wire.encode_reply(3, {"ok": True, "error": ""})
    )
    frames = reader.feed(data)
    assert next(frames).kind is wire.Kind.PING
    with pytest.raises(wire.UnknownKindError, match=r"unknown frame kind 99 \(request id 2\)") as e:
        next(frames)
    assert (e.value.request_id, e.value.kind) == (2, 99)
    assert isinstance(e.value, ValueError)
    (after,) = reader.feed(b"")
    assert (after.request_id, after.kind) == (3, wire.Kind.REPLY)
    assert wire.decode_reply(after.payload) == {"ok": True, "error": ""}


def test_frames_split_across_reads_are_joined() -> None:
    data = wire.encode_load(5, {"version": "1", "model_path": "/m"}) * 2
    reader = wire.FrameReader()
    frames = [f for i in range(0, len(data), 3) for f in reader.feed(data[i : i + 3])]
    assert [(f.request_id, f.kind) for f in frames] == [(5, wire.Kind.LOAD)] * 2
    assert wire.decode_load(frames[1].payload) == {"version": "1", "model_path": "/m"}
