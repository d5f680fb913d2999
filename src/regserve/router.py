"""The routing table: which served version answers ``/model/{name}/{ref}``.

The controller builds one immutable :class:`ModelRoutes` per served model and swaps it in
whole, so a request always sees one consistent picture. Resolution never does I/O.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

from regserve.errors import NotFoundError, RegServeError, UnavailableError
from regserve.states import VersionState
from regserve.traffic import TrafficRoute, TrafficSplit
from regserve.worker import wire
from regserve.worker.text import excerpt

__all__ = ["DEFAULT_ROUTES", "ModelRoutes", "Router", "ServedVersion", "Target"]

STAGES = {"staging": "Staging", "production": "Production"}
DEFAULT_ROUTES = (TrafficRoute("Production", 100), TrafficRoute("latest", 100))
"""Where ``/model/{name}/invocations`` goes without a traffic config: the Production version,
else (none READY in Production) the latest READY version."""


class Target(Protocol):
    """What a ready version is reached through (a worker connection, a Ray handle...)."""

    async def request(
        self, content_type: str | None, body: bytes, timeout: float
    ) -> wire.Response: ...


@dataclass(frozen=True)
class ServedVersion:
    version: str
    stage: str
    state: VersionState
    state_message: str
    target: Target | None = None

    @property
    def ready(self) -> bool:
        return self.state == VersionState.READY and self.target is not None


@dataclass(frozen=True)
class ModelRoutes:
    """Everything needed to resolve refs of one model: its served versions and its aliases.

    ``aliases`` maps every alias of the model, including those on versions that are not
    served (archived), so that such an alias answers 404 with a reason, not a bare 404.
    """

    name: str
    versions: Mapping[str, ServedVersion] = field(default_factory=dict)
    aliases: Mapping[str, str] = field(default_factory=dict)
    traffic: TrafficSplit | None = None
    """The model's traffic config (None or no routes: :data:`DEFAULT_ROUTES`)."""

    def draw(self, point: float) -> tuple[str, ServedVersion]:
        """(the ref of the route drawn, its version) for a request of the split URL, with
        ``point`` uniform in [0, 1). Routes whose ref is not READY take no traffic; when
        none is, raises what the first starting or failed route's ref raises (503: the
        request waits), else the first route's 404."""
        if self.traffic is None or not self.traffic.routes:
            return self._default()
        live: list[tuple[TrafficRoute, ServedVersion]] = []
        errors: list[RegServeError] = []
        for route in self.traffic.routes:
            if route.percent == 0:
                continue
            try:
                live.append((route, self.resolve(route.ref)))
            except RegServeError as error:
                errors.append(error)
        if not live:
            # A version still starting (503, waited for) before a ref that names none (404).
            waitable = [e for e in errors if isinstance(e, UnavailableError)]
            raise (waitable or errors)[0]  # percents add up to 100: some route has a share
        left = point * sum(route.percent for route, _ in live)
        for route, served in live:
            left -= route.percent
            if left < 0:
                return route.ref, served
        return live[-1][0].ref, live[-1][1]

    def _default(self) -> tuple[str, ServedVersion]:
        production, latest = (route.ref for route in DEFAULT_ROUTES)
        try:
            return production, self.resolve(production)
        except RegServeError as error:
            try:
                return latest, self.resolve(latest)
            except RegServeError as fallback:
                # No Production version at all: say why latest cannot answer (a version
                # still starting is waited for, not a 404).
                raise (fallback if isinstance(error, NotFoundError) else error) from None

    def shadow(self, point: float) -> tuple[str, ServedVersion] | None:
        """The shadow's (ref, version) when a request (``point`` uniform in [0, 1)) is to be
        mirrored and the shadow is READY; None otherwise."""
        shadow = self.traffic.shadow if self.traffic else None
        if shadow is None or point * 100 >= shadow.percent:
            return None
        try:
            return shadow.ref, self.resolve(shadow.ref)
        except RegServeError:
            return None

    def unready_refs(self) -> dict[str, str]:
        """Each ref of the traffic config (routes with a share, and the shadow) that takes no
        traffic now, with why."""
        if self.traffic is None:
            return {}
        routes = [r for r in self.traffic.routes if r.percent > 0]
        unready: dict[str, str] = {}
        for route in [*routes, *([self.traffic.shadow] if self.traffic.shadow else [])]:
            try:
                self.resolve(route.ref)
            except RegServeError as error:
                unready[route.ref] = error.message
        return unready

    def resolve(self, ref: str) -> ServedVersion:
        if ref.isascii() and ref.isdigit():  # "²" is a digit to isdigit(), not to int()
            return self._by_version(ref)
        lowered = ref.lower()
        if lowered == "latest":
            return self._highest_ready(list(self.versions.values()), "latest")
        if lowered in STAGES:
            stage = STAGES[lowered]
            candidates = [v for v in self.versions.values() if v.stage == stage]
            return self._highest_ready(candidates, f"stage {stage}")
        return self._by_alias(ref.removeprefix("@"))

    def _by_version(self, version: str) -> ServedVersion:
        # Not int(): it refuses more than 4,300 digits, and a URL may hold more.
        served = self.versions.get(version.lstrip("0") or "0")
        if served is None:
            raise NotFoundError(
                f"Version {excerpt(version)} of model '{self.name}' is not served: it does not "
                "exist or is archived."
            )
        _check_ready(self.name, served)
        return served

    def _by_alias(self, alias: str) -> ServedVersion:
        version = self.aliases.get(alias)
        if version is None:
            raise NotFoundError(
                f"Model '{self.name}' has no version, stage or alias named '{excerpt(alias)}'. "
                "Use a version number, Staging, Production, latest or an alias."
            )
        served = self.versions.get(version)
        if served is None:
            raise NotFoundError(
                f"Alias '{alias}' of model '{self.name}' points at version {version}, which is "
                "not served (archived or not registered as READY)."
            )
        _check_ready(self.name, served)
        return served

    def _highest_ready(self, candidates: list[ServedVersion], what: str) -> ServedVersion:
        if not candidates:
            raise NotFoundError(f"Model '{self.name}' has no served version in {what}.")
        ordered = sorted(candidates, key=lambda v: int(v.version), reverse=True)
        for served in ordered:
            if served.ready:
                return served
        _check_ready(self.name, ordered[0])
        raise AssertionError("unreachable")  # _check_ready raised: nothing is ready


def _check_ready(model: str, served: ServedVersion) -> None:
    if served.ready:
        return
    if served.state == VersionState.FAILED:
        raise UnavailableError(
            f"Version {served.version} of model '{model}' failed: {served.state_message}",
            retry_after=30,
        )
    raise UnavailableError(
        f"Version {served.version} of model '{model}' is not ready yet "
        f"({served.state}: {served.state_message}). Retry shortly.",
        retry_after=2,
    )


class Router:
    """Holds the current :class:`ModelRoutes` of every served model."""

    def __init__(self) -> None:
        self._models: dict[str, ModelRoutes] = {}
        self._changed: asyncio.Future[None] | None = None

    def publish(self, routes: ModelRoutes) -> None:
        self._models = {**self._models, routes.name: routes}
        self._notify()

    def withdraw(self, name: str) -> None:
        self._models = {k: v for k, v in self._models.items() if k != name}
        self._notify()

    async def changed(self, timeout: float) -> None:
        """Until the next :meth:`publish` or :meth:`withdraw` (of any model), or ``timeout``:
        a request waiting for a version to become ready looks again then."""
        if self._changed is None or self._changed.done():
            self._changed = asyncio.get_running_loop().create_future()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(asyncio.shield(self._changed), timeout)

    def _notify(self) -> None:
        changed, self._changed = self._changed, None
        if changed is not None and not changed.done():
            changed.set_result(None)

    def get(self, name: str) -> ModelRoutes | None:
        return self._models.get(name)

    def all(self) -> list[ModelRoutes]:
        """Every served model's routes (a snapshot)."""
        return list(self._models.values())

    def resolve(self, name: str, ref: str) -> ServedVersion:
        return self._routes(name).resolve(ref)

    def draw(self, name: str, point: float) -> tuple[str, ServedVersion]:
        """:meth:`ModelRoutes.draw` of the model ``name`` (404 when it is not served)."""
        return self._routes(name).draw(point)

    def _routes(self, name: str) -> ModelRoutes:
        routes = self._models.get(name)
        if routes is None:
            raise NotFoundError(
                f"Model '{excerpt(name)}' is not served. Enable serving for it first "
                "(POST /api/2.0/preview/mlflow/endpoints/enable)."
            )
        return routes
