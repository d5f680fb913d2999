"""How another gateway reaches a version on Ray: ``ray:<application>/<deployment>``.

The leader's controller deploys; a follower gateway turns the stored address back into a
:class:`~.target.RayTarget` (a DeploymentHandle), which needs that gateway connected to the
same Ray cluster. The same shape as the local backend's ``LocalTargets`` (socket paths).
"""

from __future__ import annotations

from collections.abc import Sequence

from regserve.backends.ray.target import RayTarget
from regserve.router import Target

__all__ = ["RayTargets"]

_SCHEME = "ray:"


class RayTargets:
    """The Ray backend's ``address <-> target`` translation."""

    def addresses(self, target: Target) -> list[str]:
        if isinstance(target, RayTarget):
            return [f"{_SCHEME}{target.app}/{target.deployment}"]
        return []

    def target(self, model_name: str, version: str, addresses: Sequence[str]) -> Target | None:
        found = [a for a in addresses if a.startswith(_SCHEME)]
        if not found:
            return None
        import ray
        from ray import serve

        if not ray.is_initialized():  # a follower that is not connected to Ray (yet)
            return None
        app, _, deployment = found[0].removeprefix(_SCHEME).partition("/")
        handle = serve.get_deployment_handle(deployment, app_name=app)
        return RayTarget(handle, f"Version {version} of '{model_name}'", app, deployment)

    def close(self, target: Target) -> None:
        """Nothing to close: a handle holds no connection of its own."""
