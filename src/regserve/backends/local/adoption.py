"""Finding, checking and adopting the workers a previous regserve process left running.

At start the backend reads the worker records (:mod:`.worker_records`): a worker whose process is
still the one recorded and that answers PING on its socket, naming the same pid, is kept as a
*leftover*, its connection held open (so its orphan watch does not stop it meanwhile). The
controller then asks, for each version it wants, whether a leftover runs that very model
(:meth:`Leftovers.claim`); one that does is adopted, one that runs something else is stopped,
and after the first pass the leftovers nobody claimed are stopped too.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from pathlib import Path

from regserve.backends.local.client import WorkerClient
from regserve.backends.local.process import find_leftovers, stop_pid
from regserve.backends.local.worker_records import WorkerRecord, read_record, remove_record
from regserve.errors import RegServeError

__all__ = ["Leftover", "Leftovers"]

_log = logging.getLogger("regserve.supervisor")
_PING_TIMEOUT = 3.0


@dataclass
class Leftover:
    """A live, answering worker of a previous process, not adopted yet."""

    path: Path
    record: WorkerRecord
    client: WorkerClient


class Leftovers:
    """The workers a previous process left, keyed by socket path until claimed or stopped."""

    def __init__(self) -> None:
        self._by_socket: dict[str, Leftover] = {}

    async def find(self, run_dir: Path) -> None:
        """Read the records in ``run_dir``; keep the workers that are alive and answer."""
        found = await asyncio.to_thread(find_leftovers, run_dir)
        checked = await asyncio.gather(*(self._check(path, record) for path, record in found))
        for leftover in checked:
            if leftover is not None:
                self._by_socket[leftover.record.socket] = leftover
        if self._by_socket:
            _log.info("found %d running workers of a previous run", len(self._by_socket))

    async def _check(self, path: Path, record: WorkerRecord) -> Leftover | None:
        label = record.describe().capitalize()
        client = WorkerClient(record.socket, label)
        try:
            pong = await client.ping(timeout=_PING_TIMEOUT)
            if pong.get("pid") == record.pid and pong.get("name") == record.model_name:
                return Leftover(path, record, client)
            _log.info("the %s answers as another worker (%s)", record.describe(), pong)
        except (RegServeError, OSError, ValueError) as exc:
            _log.info("the %s does not answer (%s)", record.describe(), exc)
        client.close()
        await _stop(path, record)
        return None

    def claim(self, socket: str) -> Leftover | None:
        """Take the leftover listening on ``socket`` (the caller adopts or stops it)."""
        return self._by_socket.pop(socket, None)

    def claim_version(self, model_name: str, version: str) -> list[Leftover]:
        """Take every one-version leftover of that version (its replicas), by replica."""
        found = [
            leftover
            for leftover in self._by_socket.values()
            if not leftover.record.shared
            and (leftover.record.model_name, leftover.record.version) == (model_name, version)
        ]
        for leftover in found:
            del self._by_socket[leftover.record.socket]
        return sorted(found, key=lambda leftover: leftover.record.replica or 1)

    async def discard(self, leftover: Leftover, why: str) -> None:
        """Stop a leftover that is not adopted, and drop its record."""
        _log.info("not adopting the %s: %s", leftover.record.describe(), why)
        leftover.client.close()
        await _stop(leftover.path, leftover.record)

    async def release(self) -> None:
        """Stop every leftover nobody claimed (no longer wanted)."""
        leftovers, self._by_socket = list(self._by_socket.values()), {}
        for leftover in leftovers:
            await self.discard(leftover, "no served version wants it")


async def _stop(path: Path, record: WorkerRecord) -> None:
    with contextlib.suppress(OSError):
        await asyncio.to_thread(_stop_now, path, record)


def _stop_now(path: Path, record: WorkerRecord) -> None:
    stop_pid(record)
    # A new worker may have taken the same socket and record path meanwhile: leave its own.
    current = read_record(path)
    if current is None or current.pid == record.pid:
        remove_record(path)
        Path(record.socket).unlink(missing_ok=True)
