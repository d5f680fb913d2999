"""The controller of one gateway among several: it reconciles only while its gateway leads.

On a follower, the control API still writes enable, disable and config changes to the store;
instead of reconciling, the controller tells the leader (a ``CONFIG`` change), whose
controller wakes at once. When its gateway stops leading, :meth:`FencedController.stand_down`
stops every worker and forgets what ran, so two controllers never act on the same models.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from regserve.controller.reconciler import Controller
from regserve.gateways.changes import CONFIG, ChangeFeed

__all__ = ["FencedController"]


class FencedController(Controller):
    """A :class:`Controller` gated by ``leading()``."""

    def __init__(
        self, *args: Any, leading: Callable[[], bool], changes: ChangeFeed, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self._leading = leading
        self._changes = changes

    async def reconcile(self, name: str) -> None:
        if self._leading():
            await super().reconcile(name)
        else:
            self._changes.publish(CONFIG, name)

    def trigger(self) -> None:
        if self._leading():
            super().trigger()
        else:
            self._changes.publish(CONFIG)

    def wake(self) -> None:
        """Another gateway changed what is served: a pass now (the leader only)."""
        if self._leading():
            super().trigger()

    async def stand_down(self) -> None:
        """Another gateway leads now: stop every worker and forget what was served."""
        served = list(self._served)
        await self.shutdown()
        for name in served:
            self._router.withdraw(name)
        self._served.clear()
