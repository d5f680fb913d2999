"""A model's traffic config: how ``POST /model/{name}/invocations`` (no ref) splits its
requests between refs, and which ref gets a mirrored copy of some of them.

The config is plain data, checked once when it is set (:func:`check_split`) and stored as
JSON; the routing table (``router.py``) carries it and draws from it per request. A route
whose ref is not READY takes no traffic: its share goes to the others in proportion to
theirs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from regserve.errors import InvalidParameterError

__all__ = ["MAX_ROUTES", "TrafficRoute", "TrafficSplit", "check_split"]

MAX_ROUTES = 10
"""Most routes a split may have."""
_MAX_REF = 256


@dataclass(frozen=True)
class TrafficRoute:
    """One entry: ``percent`` of the requests go to ``ref`` (a version, stage, alias)."""

    ref: str
    percent: int

    def to_json(self) -> dict[str, Any]:
        return {"ref": self.ref, "percent": self.percent}


@dataclass(frozen=True)
class TrafficSplit:
    """The routes (percents adding up to 100) and an optional shadow that gets a copy of
    ``shadow.percent`` % of the requests, answered off the caller's path and never returned."""

    routes: tuple[TrafficRoute, ...] = ()
    shadow: TrafficRoute | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "routes": [r.to_json() for r in self.routes],
            "shadow": self.shadow.to_json() if self.shadow else None,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TrafficSplit:
        routes = tuple(TrafficRoute(str(r["ref"]), int(r["percent"])) for r in data["routes"])
        shadow = data.get("shadow")
        mirror = TrafficRoute(str(shadow["ref"]), int(shadow["percent"])) if shadow else None
        return cls(routes, mirror)


def check_split(split: TrafficSplit) -> None:
    """Raise :class:`InvalidParameterError` saying what to fix when ``split`` is not a valid
    config (an empty ``routes`` is valid: it means the default)."""
    routes = split.routes
    if len(routes) > MAX_ROUTES:
        raise InvalidParameterError(
            f"routes has {len(routes)} entries; at most {MAX_ROUTES} are allowed."
        )
    for route in (*routes, *([split.shadow] if split.shadow else [])):
        _check_route(route)
    refs = [r.ref for r in routes]
    duplicates = sorted({ref for ref in refs if refs.count(ref) > 1})
    if duplicates:
        raise InvalidParameterError(
            f"routes names {', '.join(duplicates)} more than once; give each ref one entry."
        )
    total = sum(r.percent for r in routes)
    if routes and total != 100:
        raise InvalidParameterError(
            f"The percents of routes add up to {total}; they must add up to 100."
        )
    if split.shadow and not routes:
        raise InvalidParameterError(
            "A shadow needs routes: give routes whose percents add up to 100 as well."
        )


def _check_route(route: TrafficRoute) -> None:
    if not route.ref.strip():
        raise InvalidParameterError("A route's ref is empty; name a version, stage or alias.")
    if len(route.ref) > _MAX_REF:
        raise InvalidParameterError(f"A route's ref is longer than {_MAX_REF} characters.")
    if not 0 <= route.percent <= 100:
        raise InvalidParameterError(
            f"The percent of ref '{route.ref}' is {route.percent}; use a whole number from "
            "0 to 100."
        )


def describe_split(split: TrafficSplit | None) -> str:
    """``split`` in one line, for events and logs."""
    if split is None or not split.routes:
        return "the default (the Production version, else the latest READY version)"
    text = ", ".join(f"{r.ref} {r.percent}%" for r in split.routes)
    if split.shadow is not None:
        text += f"; shadow {split.shadow.ref} {split.shadow.percent}%"
    return text


def readiness_notices(
    split: TrafficSplit | None, before: set[str], unready: dict[str, str]
) -> list[tuple[str, str]]:
    """(event type, message) for each ref of ``split`` that stopped (``unready``: ref -> why)
    or started taking traffic since ``before`` (the refs that took none then)."""
    if split is None:
        return []
    shadow = split.shadow.ref if split.shadow else None
    shares = {r.ref: r.percent for r in split.routes}
    notices: list[tuple[str, str]] = []
    for ref in sorted(set(unready) - before):
        if ref in shares:
            share = f"its {shares[ref]}% goes to the other routes"
        else:
            share = "no request is mirrored to it"
        notices.append(
            ("TRAFFIC_REF_UNAVAILABLE", f"Ref '{ref}' takes no traffic ({share}): {unready[ref]}")
        )
    for ref in sorted(before - set(unready)):
        if ref in shares or ref == shadow:
            notices.append(
                ("TRAFFIC_REF_AVAILABLE", f"Ref '{ref}' is READY and takes traffic again.")
            )
    return notices
