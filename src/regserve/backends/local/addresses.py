"""How another gateway on this machine reaches a local worker: its socket path, as a string.

``unix:<socket path>`` for a one-version worker, ``unix:<socket path>#<version>`` for a version
in a shared worker (the connection then starts with a BIND frame). The leader stores these
for every READY version; followers sharing the data dir turn them back into targets.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from itertools import cycle

from regserve.backends.local.client import WorkerClient
from regserve.backends.local.replicas import ReplicaSet
from regserve.errors import UnavailableError
from regserve.router import Target
from regserve.worker import wire

__all__ = ["LocalTargets", "Replicas"]

_SCHEME = "unix:"


class Replicas:
    """A follower's view of a version's replicas: used in turn; a request whose replica is
    down (its connection failed or dropped before the answer) is sent once to the next."""

    def __init__(self, clients: Sequence[WorkerClient]) -> None:
        self.clients = list(clients)
        self._next = cycle(self.clients)

    async def request(self, content_type: str | None, body: bytes, timeout: float) -> wire.Response:
        try:
            return await next(self._next).request(content_type, body, timeout)
        except UnavailableError:
            return await next(self._next).request(content_type, body, timeout)

    def close(self) -> None:
        for client in self.clients:
            client.close()


class LocalTargets:
    """The local backend's ``address <-> target`` translation (see gateways/follower.py)."""

    def start(self, wake: Callable[[], None]) -> None:
        """Nothing to prepare: a socket path is reached when a request is sent."""

    def addresses(self, target: Target) -> list[str]:
        if isinstance(target, ReplicaSet):  # the leader's own replicas
            return [f"{_SCHEME}{path}" for path in target.sockets()]
        clients = target.clients if isinstance(target, Replicas) else [target]
        return [_address(c) for c in clients if isinstance(c, WorkerClient)]

    def target(self, model_name: str, version: str, addresses: Sequence[str]) -> Target | None:
        label = f"Version {version} of '{model_name}'"
        clients = [_client(a, label) for a in addresses if a.startswith(_SCHEME)]
        if not clients:
            return None
        return clients[0] if len(clients) == 1 else Replicas(clients)

    def close(self, target: Target) -> None:
        if isinstance(target, (WorkerClient, Replicas)):
            target.close()


def _address(client: WorkerClient) -> str:
    return f"{_SCHEME}{client.socket_path}" + (f"#{client.bind}" if client.bind else "")


def _client(address: str, label: str) -> WorkerClient:
    path, _, bind = address.removeprefix(_SCHEME).partition("#")
    return WorkerClient(path, label, bind or None)
