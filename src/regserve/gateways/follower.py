"""The routing table, shared by every gateway on one database.

The leading gateway's controller publishes each served model's :class:`ModelRoutes` as it
always did; :class:`SharedRouter` also writes them to the store (``served_routes``), with
each READY version's addresses instead of its live target, and announces it (a ``ROUTES``
change). A follower reads them back every ``interval`` seconds, or at once on that change,
and turns the addresses into targets with the backend's :class:`TargetCodec`, so every
gateway resolves version, stage and alias from the same table. Versions the table names but
this gateway cannot reach yet (on Ray, until it is connected to the cluster) are
:attr:`SharedRouter.unreached`: ``/health`` says the gateway is starting meanwhile, so a load
balancer sends it no request that would get 503.

A gateway just elected (a new ``regserve up`` or restart in place included) routes by the
stored table too, model by model until its controller publishes its own: the workers a
previous leader left answer at once, while the controller waits for the registry before it
adopts them (:meth:`SharedRouter.route_stored`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from regserve.gateways.changes import ROUTES, ChangeFeed
from regserve.router import ModelRoutes, Router, ServedVersion, Target
from regserve.states import VersionState
from regserve.store import StateStore
from regserve.traffic import TrafficSplit
from regserve.worker.text import log_safe

__all__ = ["SharedRouter", "TargetCodec", "decode_routes", "encode_routes"]

_log = logging.getLogger("regserve.follower")


class TargetCodec(Protocol):
    """A backend's translation between live targets and addresses other gateways can use.

    The local backend's (``backends/local/addresses.py``) uses Unix socket paths, which
    gateways sharing the machine and the data dir can reach; the Ray backend's
    (``backends/ray/addresses.py``) uses its Serve applications' names and cluster.
    """

    def start(self, wake: Callable[[], None]) -> None:
        """Called once on the event loop as the gateway starts: begin what making targets
        needs (on Ray, connecting to the cluster); ``wake`` makes the router reload."""

    def addresses(self, target: Target) -> list[str]:
        """Where ``target`` can be reached (one entry per replica)."""

    def target(self, model_name: str, version: str, addresses: Sequence[str]) -> Target | None:
        """A target reaching those addresses (None: none of them is usable here)."""

    def close(self, target: Target) -> None:
        """Drop a target made by :meth:`target`."""


def encode_routes(routes: ModelRoutes, codec: TargetCodec) -> str:
    versions = [
        {
            "version": v.version,
            "stage": v.stage,
            "state": v.state,
            "state_message": v.state_message,
            "addresses": codec.addresses(v.target) if v.target is not None else [],
        }
        for v in sorted(routes.versions.values(), key=lambda v: int(v.version))
    ]
    traffic = routes.traffic.to_json() if routes.traffic is not None else None
    return json.dumps(
        {"versions": versions, "aliases": dict(routes.aliases), "traffic": traffic},
        sort_keys=True,
    )


def decode_routes(
    name: str, body: str, make_target: Any = None
) -> tuple[ModelRoutes, dict[str, tuple[str, ...]]]:
    """The routes in ``body`` (targets from ``make_target(version, addresses)``) and each
    version's addresses."""
    data = json.loads(body)
    versions: dict[str, ServedVersion] = {}
    addresses: dict[str, tuple[str, ...]] = {}
    for v in data.get("versions", []):
        version = str(v["version"])
        addresses[version] = tuple(str(a) for a in v.get("addresses", []))
        target = make_target(version, addresses[version]) if make_target else None
        versions[version] = ServedVersion(
            version, str(v["stage"]), VersionState(v["state"]), str(v["state_message"]), target
        )
    aliases = {str(k): str(val) for k, val in data.get("aliases", {}).items()}
    traffic = TrafficSplit.from_json(data["traffic"]) if data.get("traffic") else None
    return ModelRoutes(name, versions, aliases, traffic), addresses


class SharedRouter(Router):
    """A :class:`Router` whose table the leader writes to the store and followers read."""

    def __init__(
        self, store: StateStore, codec: TargetCodec, changes: ChangeFeed, interval: float = 1.0
    ) -> None:
        super().__init__()
        self._store = store
        self._codec = codec
        self._changes = changes
        self._interval = interval
        self.leading = False
        self._dirty: set[str] = set()
        self._dirty_event = asyncio.Event()
        self._wake = asyncio.Event()
        self._seen: dict[str, str] = {}
        self._targets: dict[tuple[str, str], tuple[tuple[str, ...], Target]] = {}
        self._stored: set[str] = set()
        """Models routed by the stored table while leading, until the controller publishes."""
        self._stored_unreached: set[str] = set()
        """Of those, the ones with a version not reached yet (on Ray, until connected)."""
        self._unreached: set[str] = set()

    # -- the leader's side -------------------------------------------------------------------

    def publish(self, routes: ModelRoutes) -> None:
        super().publish(routes)
        self._unstore(routes.name)
        self._mark(routes.name)

    def withdraw(self, name: str) -> None:
        super().withdraw(name)
        self._unstore(name)
        self._mark(name)

    async def route_stored(self) -> None:
        """Just elected (after :meth:`lead`): route every model the controller has not
        published yet as the stored table says, until it does."""
        bodies = await asyncio.to_thread(self._store.all_routes)
        for name, body in sorted(bodies.items()):
            if self.leading and self.get(name) is None:
                self._stored.add(name)
                if not self._follow_model(name, body):
                    self._stored_unreached.add(name)

    async def _reach_stored(self) -> None:
        """Leading: try again the stored routes not reached yet (Ray just connected: the
        applications a previous process left answer before the controller adopts them)."""
        bodies = await asyncio.to_thread(self._store.all_routes)
        for name in sorted(self._stored_unreached):
            body = bodies.get(name)
            gone = body is None or not self.leading or name not in self._stored
            if body is None or gone or self._follow_model(name, body):
                self._stored_unreached.discard(name)

    def _unstore(self, name: str) -> None:
        """The controller owns ``name``'s routes now: close the stored table's targets (a
        request in flight on one is sent again, to the controller's)."""
        self._stored_unreached.discard(name)
        if name in self._stored:
            self._stored.discard(name)
            self._drop_targets(name, keep=set())

    def _mark(self, name: str) -> None:
        if self.leading:
            self._dirty.add(name)
            self._dirty_event.set()

    def lead(self) -> None:
        """This gateway leads now: what its controller publishes is written for the others.
        The followed targets are dropped (the controller publishes its own)."""
        self.leading = True
        for _, target in self._targets.values():
            self._codec.close(target)
        self._targets.clear()
        self._seen.clear()
        self._stored.clear()
        self._stored_unreached.clear()
        self._unreached.clear()

    def follow(self) -> None:
        """This gateway follows now: reload the table from the store at once."""
        self.leading = False
        self._dirty.clear()
        self._seen.clear()
        self._stored.clear()
        self._stored_unreached.clear()
        self._wake.set()

    async def write_loop(self) -> None:
        """While leading: write every changed model's routes, then announce them."""
        while True:
            await self._dirty_event.wait()
            self._dirty_event.clear()
            names, self._dirty = self._dirty, set()
            for name in sorted(names):
                if self.leading:
                    await self._write(name)

    async def _write(self, name: str) -> None:
        routes = self.get(name)
        try:
            if routes is None:
                await asyncio.to_thread(self._store.delete_routes, name)
            else:
                body = encode_routes(routes, self._codec)
                await asyncio.to_thread(self._store.put_routes, name, body)
            await asyncio.to_thread(self._changes.send, ROUTES, name)
        except Exception:
            _log.exception("could not publish the routes of %s; retrying", log_safe(name))
            await asyncio.sleep(self._interval)
            self._mark(name)

    # -- a follower's side -------------------------------------------------------------------

    def wake(self) -> None:
        """Reload now (the leader announced new routes)."""
        self._wake.set()

    @property
    def unreached(self) -> list[str]:
        """Following: the models with a version this gateway has no target for yet, although
        the table gives its addresses (the next reload tries again)."""
        return [] if self.leading else sorted(self._unreached)

    async def follow_loop(self) -> None:
        """While following: reload the table every interval, or at once when woken."""
        self._codec.start(self.wake)
        while True:
            try:
                if not self.leading:
                    await self.refresh()
                elif self._stored_unreached:
                    await self._reach_stored()
            except Exception:
                _log.exception("could not read the routing table")
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._interval)
            self._wake.clear()

    async def refresh(self) -> None:
        bodies = await asyncio.to_thread(self._store.all_routes)
        if self.leading:
            return  # elected meanwhile: the controller owns the table now
        for name in [r.name for r in self.all() if r.name not in bodies]:
            Router.withdraw(self, name)
            self._drop_targets(name, keep=set())
        for name, body in bodies.items():
            if self._seen.get(name) == body:
                continue
            if self._follow_model(name, body):
                self._seen[name] = body
                self._unreached.discard(name)
            else:
                self._unreached.add(name)
        for name in set(self._seen) - set(bodies):
            del self._seen[name]
        self._unreached &= set(bodies)

    def _follow_model(self, name: str, body: str) -> bool:
        """Route ``name`` as ``body`` says; False when a version with addresses got no target
        yet (e.g. Ray not connected yet): the next reload tries again."""

        def make_target(version: str, addresses: tuple[str, ...]) -> Target | None:
            known = self._targets.get((name, version))
            if known is not None and known[0] == addresses:
                return known[1]  # same workers: keep the open connection
            if known is not None:
                self._codec.close(known[1])
                del self._targets[(name, version)]
            target = self._codec.target(name, version, addresses) if addresses else None
            if target is not None:
                self._targets[(name, version)] = (addresses, target)
            return target

        routes, addresses = decode_routes(name, body, make_target)
        Router.publish(self, routes)
        self._drop_targets(name, keep=set(routes.versions))
        return all(routes.versions[v].target is not None for v, a in addresses.items() if a)

    def _drop_targets(self, name: str, keep: set[str]) -> None:
        for key in [k for k in self._targets if k[0] == name and k[1] not in keep]:
            self._codec.close(self._targets.pop(key)[1])
