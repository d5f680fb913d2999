"""How another gateway reaches a version on Ray: ``ray:<application>/<deployment>@<gcs>``.

The leader's controller deploys; a follower gateway turns the stored address back into a
:class:`~.target.RayTarget` (a DeploymentHandle), which needs that gateway connected to the
same Ray cluster. A follower given ``--ray-address`` connects to it when it starts
(:meth:`RayTargets.start`); otherwise to the cluster the address names (its GCS address,
``@host:port``) when it first reads one, whether the leader was given ``--ray-address`` or
started Ray on this machine. The connection is made in the background (again, every
``_RETRY_SECONDS``, after a failure); until it is up the follower cannot reach those versions,
and its ``/health`` says it is starting (``SharedRouter.unreached``). Once connected the
router reloads at once and builds the handles. The same shape as the local backend's
``LocalTargets`` (socket paths).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable, Sequence

from regserve.backends.ray.cluster import connect_driver, prepare_ray_auth, reclaim_signals
from regserve.backends.ray.target import RayTarget
from regserve.router import Target

__all__ = ["RayTargets"]

_log = logging.getLogger("regserve.ray")
_SCHEME = "ray:"
_RETRY_SECONDS = 5.0


class RayTargets:
    """The Ray backend's ``address <-> target`` translation."""

    def __init__(self, ray_address: str | None = None) -> None:
        prepare_ray_auth()
        self._ray_address = ray_address
        """Where to connect (``--ray-address``): at start, and whichever cluster an address
        names (see :meth:`target`)."""
        self._connecting: threading.Thread | None = None
        self._last_attempt = float("-inf")
        self._signals_reclaimed = False
        self._wake: Callable[[], None] = lambda: None

    def start(self, wake: Callable[[], None]) -> None:
        """On the event loop, as the gateway starts: connect to ``--ray-address`` now (in the
        background), and call ``wake`` (on the loop) once connected."""
        loop = asyncio.get_running_loop()

        def wake_threadsafe() -> None:
            with contextlib.suppress(RuntimeError):  # the loop closed: the gateway stopped
                loop.call_soon_threadsafe(wake)

        self._wake = wake_threadsafe
        if self._ray_address:
            self._connected(self._ray_address)

    def addresses(self, target: Target) -> list[str]:
        if isinstance(target, RayTarget):
            cluster = _gcs_address()
            suffix = f"@{cluster}" if cluster else ""
            return [f"{_SCHEME}{target.app}/{target.deployment}{suffix}"]
        return []

    def target(self, model_name: str, version: str, addresses: Sequence[str]) -> Target | None:
        found = [a for a in addresses if a.startswith(_SCHEME)]
        if not found:
            return None
        name, _, cluster = found[0].removeprefix(_SCHEME).partition("@")
        # The operator's --ray-address first: the GCS address the leader sees may not be
        # reachable from this machine.
        if not self._connected(self._ray_address or cluster):
            return None
        from ray import serve

        app, _, deployment = name.partition("/")
        handle = serve.get_deployment_handle(deployment, app_name=app)
        return RayTarget(handle, f"Version {version} of '{model_name}'", app, deployment)

    def close(self, target: Target) -> None:
        """Nothing to close: a handle holds no connection of its own."""

    def _connected(self, cluster: str | None) -> bool:
        """Connected to Ray; else start connecting to ``cluster`` in the background."""
        import ray

        if ray.is_initialized():
            if not self._signals_reclaimed:  # on the event loop's (main) thread
                reclaim_signals()
                self._signals_reclaimed = True
            return True
        busy = self._connecting is not None and self._connecting.is_alive()
        if cluster and not busy and time.monotonic() - self._last_attempt >= _RETRY_SECONDS:
            self._last_attempt = time.monotonic()
            self._connecting = threading.Thread(
                target=self._connect, args=(cluster,), name="ray connect", daemon=True
            )
            self._connecting.start()
        return False

    def _connect(self, cluster: str) -> None:
        _log.info("connecting to the Ray cluster at %s (to reach the served versions)", cluster)
        try:
            connect_driver(cluster)
        except Exception:
            _log.exception(
                "could not connect to the Ray cluster at %s; trying again (at most every %g s)",
                cluster,
                _RETRY_SECONDS,
            )
            return
        _log.info("connected to the Ray cluster at %s", cluster)
        self._wake()


def _gcs_address() -> str | None:
    import ray

    if not ray.is_initialized():
        return None
    try:
        return str(ray.get_runtime_context().gcs_address)
    except Exception:  # an older or newer Ray without it: followers need --ray-address
        return None
