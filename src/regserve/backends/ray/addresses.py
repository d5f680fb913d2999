"""How another gateway reaches a version on Ray: ``ray:<application>/<deployment>@<gcs>``.

The leader's controller deploys; a follower gateway turns the stored address back into a
:class:`~.target.RayTarget` (a DeploymentHandle), which needs that gateway connected to the
same Ray cluster. The address names the cluster (its GCS address, ``@host:port``), so a
follower connects to the leader's cluster by itself, whether the leader was given
``--ray-address`` or started Ray on this machine. The connection is made once, in the
background: until it is up the follower has no target for the version (503 with
``Retry-After``), and the routing table's next reload (every second) builds the handle. The same
shape as the local backend's ``LocalTargets`` (socket paths).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence

from regserve.backends.ray.cluster import connect_driver, prepare_ray_auth, reclaim_signals
from regserve.backends.ray.target import RayTarget
from regserve.router import Target

__all__ = ["RayTargets"]

_log = logging.getLogger("regserve.ray")
_SCHEME = "ray:"


class RayTargets:
    """The Ray backend's ``address <-> target`` translation."""

    def __init__(self, ray_address: str | None = None) -> None:
        prepare_ray_auth()
        self._ray_address = ray_address
        """Where to connect when an address names no cluster (``--ray-address``)."""
        self._connecting: threading.Thread | None = None
        self._signals_reclaimed = False

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
        if not self._connected(cluster or self._ray_address):
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
        if cluster and self._connecting is None:
            self._connecting = threading.Thread(
                target=_connect, args=(cluster,), name="ray connect", daemon=True
            )
            self._connecting.start()
        return False


def _connect(cluster: str) -> None:
    _log.info("connecting to the leader's Ray cluster at %s", cluster)
    try:
        connect_driver(cluster)
    except Exception:
        _log.exception("could not connect to the Ray cluster at %s", cluster)


def _gcs_address() -> str | None:
    import ray

    if not ray.is_initialized():
        return None
    try:
        return str(ray.get_runtime_context().gcs_address)
    except Exception:  # an older or newer Ray without it: followers need --ray-address
        return None
