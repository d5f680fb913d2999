"""This gateway among the others on its state database: it leads or it follows.

Every ``regserve up`` serves scoring requests and the control API. The one that holds the
leader lock (:mod:`regserve.gateways.leader`) also runs the controller: registry polling, the
backend and its workers, the routing table it writes to the store. The others follow: they
read that table (:mod:`regserve.gateways.follower`) and reach the leader's workers through it.
Changes made through any gateway reach the others through the change feed
(:mod:`regserve.gateways.changes`).
Each change of leader is an event (``LEADER_ELECTED``, ``LEADER_LOST``, in the audit log).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import TYPE_CHECKING, Any

from regserve.gateways.changes import ALL, CONFIG, GRANTS, ROUTES, TOKENS, Change, ChangeFeed
from regserve.gateways.fenced import FencedController
from regserve.gateways.follower import SharedRouter
from regserve.gateways.leader import LOCK_NAME, LeaderElector, LeaderLock
from regserve.store import StateStore

if TYPE_CHECKING:  # auth.service imports the change feed of this package
    from regserve.auth.service import AccessService

__all__ = ["GatewayNode"]

_log = logging.getLogger("regserve.gateways")


class GatewayNode:
    """Elects, takes over, stands down, and applies the other gateways' changes."""

    def __init__(
        self,
        gateway_id: str,
        store: StateStore,
        lock: LeaderLock,
        changes: ChangeFeed,
        router: SharedRouter,
        controller: FencedController,
        access: AccessService,
        prepare: Callable[[], Awaitable[None]],
        interval: float = 1.0,
    ) -> None:
        self.gateway_id = gateway_id
        self._store = store
        self._changes = changes
        self._router = router
        self._controller = controller
        self._access = access
        self._prepare = prepare
        self._interval = interval
        self.elector = LeaderElector(lock, self._elected, self._lost, interval)
        self._controlling: asyncio.Task[None] | None = None
        self._seen_leader: str | None = None
        """The leader as the store last named it (read while this gateway follows)."""

    @property
    def leading(self) -> bool:
        return self.elector.leading

    @property
    def role(self) -> str:
        return "leader" if self.leading else "follower"

    @property
    def leader(self) -> str | None:
        """The gateway that leads, as /health shows it: this one from the moment it holds the
        lock (its own record in the store is written once its controller runs), else the one
        the store last named."""
        return self.gateway_id if self.leading else self._seen_leader

    def loops(self) -> list[tuple[Coroutine[Any, Any, None], str]]:
        """The coroutines to run for the process' lifetime, with their names."""
        return [
            (self._changes.run(self.apply), "change feed"),
            (self._router.write_loop(), "routes writer"),
            (self._router.follow_loop(), "routes follower"),
            (self._watch_leader(), "leader watch"),
            (self.elector.run(), "leader election"),
        ]

    async def stop(self) -> None:
        await self._stop_controlling()

    # -- leadership --------------------------------------------------------------------------

    async def _elected(self) -> None:
        _log.info("gateway %s leads: its controller reconciles", self.gateway_id)  # the usual
        self._router.lead()
        enabled = {e.model_name for e in await asyncio.to_thread(self._store.list_endpoints)}
        for routes in self._router.all():
            if routes.name not in enabled:
                self._router.withdraw(routes.name)  # and its stale row
        for name in set(await asyncio.to_thread(self._store.all_routes)) - enabled:
            await asyncio.to_thread(self._store.delete_routes, name)
        await self._router.route_stored()  # until the controller adopts (after the registry)
        await self._prepare()
        self._controlling = asyncio.create_task(self._controller.run(), name="controller")
        await asyncio.to_thread(self._store.set_leader, LOCK_NAME, self.gateway_id)
        await self._event(
            "LEADER_ELECTED",
            f"Gateway {self.gateway_id} leads: its controller "
            "reconciles; the other gateways follow.",
        )

    async def _lost(self) -> None:
        _log.warning("gateway %s no longer leads: stopping its controller", self.gateway_id)
        self._router.leading = False  # fence first: nothing more is written for the others
        await self._stop_controlling()
        await self._controller.stand_down()
        self._router.follow()
        self._seen_leader = None
        with contextlib.suppress(Exception):  # the database may be what was lost
            await self._event(
                "LEADER_LOST",
                f"Gateway {self.gateway_id} lost the leader lock; "
                "it stopped its controller and follows.",
            )

    async def _stop_controlling(self) -> None:
        task, self._controlling = self._controlling, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _watch_leader(self) -> None:
        """Keep :attr:`leader` (shown by /health) up to date on followers."""
        while True:
            if not self.leading:
                with contextlib.suppress(Exception):
                    found = await asyncio.to_thread(self._store.get_leader, LOCK_NAME)
                    self._seen_leader = found.holder if found else None
            await asyncio.sleep(self._interval)

    async def _event(self, event_type: str, message: str) -> None:
        await asyncio.to_thread(
            self._store.add_event, "", event_type, message, None, f"gateway {self.gateway_id}"
        )

    # -- the other gateways' changes ---------------------------------------------------------

    def apply(self, change: Change) -> None:
        kind = change.kind
        if kind in (TOKENS, ALL):
            self._access.forget_tokens(broadcast=False)
        if kind == GRANTS and change.key:
            self._access.forget_grants(change.key, broadcast=False)
        elif kind in (GRANTS, ALL):
            self._access.forget_grants(broadcast=False)
        if kind in (CONFIG, ALL):
            self._controller.wake()
        if kind in (ROUTES, ALL):
            self._router.wake()
