"""Worker records (what the next process adopts) and the worker's orphan watch."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from regserve.backends.local.worker_records import (
    WorkerRecord,
    is_running,
    process_start_time,
    read_record,
    read_records,
    write_record,
)
from regserve.worker import wire
from regserve.worker.orphan import watch_orphan


def _record(pid: int, start_time: int, socket: str) -> WorkerRecord:
    return WorkerRecord(
        pid, start_time, socket, "m", sys.executable, version="1", model_path="/models/m/1"
    )


def test_a_record_is_written_whole_and_read_back(tmp_path: Path) -> None:
    record = _record(123, 456, str(tmp_path / "a.sock"))
    write_record(tmp_path / "a.pid", record)
    (tmp_path / "broken.pid").write_text("{not json")
    (tmp_path / ".c.pid.99.tmp").write_text("half")  # a writer killed before its rename
    found = dict(read_records(tmp_path))
    assert found[tmp_path / "broken.pid"] is None
    back = found[tmp_path / "a.pid"]
    assert back is not None
    assert (back.pid, back.start_time, back.model_path) == (123, 456, "/models/m/1")
    assert back.created_at > 0
    assert not list(tmp_path.glob(".*.tmp"))


def test_a_template_record_names_its_control_protocol(tmp_path: Path) -> None:
    """A template started before templates spoke wire frames has no ``template_protocol`` in
    its record: it reads back as None, which the replica set does not adopt."""
    template = dataclasses.replace(
        _record(1, 2, str(tmp_path / "t.sock")), template_protocol=wire.TEMPLATE_PROTOCOL
    )
    write_record(tmp_path / "t.tpl", template)
    back = read_record(tmp_path / "t.tpl")
    assert back is not None
    assert back.template_protocol == wire.TEMPLATE_PROTOCOL
    old = json.loads((tmp_path / "t.tpl").read_text())
    del old["template_protocol"]
    (tmp_path / "old.tpl").write_text(json.dumps(old))
    back = read_record(tmp_path / "old.tpl")
    assert back is not None
    assert back.template_protocol is None


def test_a_record_holds_only_for_the_process_it_names(tmp_path: Path) -> None:
    socket = str(tmp_path / "w.sock")
    code = "import time; time.sleep(30)  # regserve.worker"
    process = subprocess.Popen([sys.executable, "-c", code, socket])
    try:
        started = process_start_time(process.pid)
        assert started is not None
        deadline = time.monotonic() + 10  # until the child has exec'd (its command line is ours)
        while not is_running(_record(process.pid, started, socket)):
            assert time.monotonic() < deadline, "the record never matched the running process"
            time.sleep(0.02)
        assert not is_running(_record(process.pid, started + 1, socket))  # a reused pid
        assert not is_running(_record(process.pid, started, str(tmp_path / "other.sock")))
        assert not is_running(_record(os.getpid(), process_start_time(os.getpid()) or 0, socket))
    finally:
        process.kill()
        process.wait()
    assert not is_running(_record(process.pid, started, socket))


def test_the_orphan_watch_stops_a_worker_nobody_connects_to() -> None:
    async def scenario() -> tuple[float, float]:
        loop = asyncio.get_running_loop()
        stopped: list[float] = []
        connections: set[object] = {object()}
        began = loop.time()
        watch = asyncio.create_task(
            watch_orphan(0.4, connections, lambda: stopped.append(loop.time()), tick=0.05)
        )
        await asyncio.sleep(0.6)  # connected: no stop
        assert not stopped
        connections.clear()
        cleared = loop.time()
        await asyncio.wait_for(watch, 5)
        return stopped[0] - cleared, cleared - began

    alone_for, connected_for = asyncio.run(scenario())
    assert alone_for >= 0.4
    assert connected_for >= 0.6


def test_an_orphan_timeout_of_zero_never_stops() -> None:
    async def scenario() -> None:
        await asyncio.wait_for(watch_orphan(0, set(), lambda: None), 1)

    asyncio.run(scenario())
