"""The traffic config: validation, the draw between routes, readiness and its events."""

from __future__ import annotations

import dataclasses

import pytest

from regserve.errors import InvalidParameterError, NotFoundError, UnavailableError
from regserve.gateways.follower import decode_routes, encode_routes
from regserve.router import ModelRoutes, ServedVersion
from regserve.traffic import TrafficRoute, TrafficSplit, check_split, readiness_notices
from tests.test_router import LAUNCHING, v


def split(*routes: tuple[str, int], shadow: tuple[str, int] | None = None) -> TrafficSplit:
    mirror = TrafficRoute(*shadow) if shadow else None
    return TrafficSplit(tuple(TrafficRoute(ref, pct) for ref, pct in routes), mirror)


def model(traffic: TrafficSplit | None, *versions: ServedVersion, **aliases: str) -> ModelRoutes:
    return ModelRoutes("m", {s.version: s for s in versions}, aliases, traffic)


@pytest.mark.parametrize(
    ("bad", "says"),
    [
        (split(("1", 90), ("2", 20)), "add up to 110; they must add up to 100"),
        (split(("1", 100), ("1", 0)), "names 1 more than once"),
        (split(("", 100)), "ref is empty"),
        (split(("1", 101), ("2", -1)), "whole number from 0 to 100"),
        (split(*((str(i), 10) for i in range(11))), "at most 10"),
        (split(shadow=("1", 5)), "A shadow needs routes"),
        (split(("1", 100), shadow=("2", 150)), "whole number from 0 to 100"),
    ],
)
def test_bad_configs_say_what_to_fix(bad: TrafficSplit, says: str) -> None:
    with pytest.raises(InvalidParameterError, match=says):
        check_split(bad)


def test_good_configs_pass() -> None:
    check_split(split(("1", 90), ("champion", 10), shadow=("Staging", 100)))
    check_split(split())  # back to the default


def test_draw_follows_the_percents() -> None:
    r = model(split(("1", 90), ("champion", 10)), v("1"), v("2"), champion="2")
    assert r.draw(0.0) == ("1", r.versions["1"])
    assert r.draw(0.8999) == ("1", r.versions["1"])
    assert r.draw(0.9) == ("champion", r.versions["2"])
    assert r.draw(0.9999) == ("champion", r.versions["2"])


def test_an_unready_ref_gives_its_share_to_the_others() -> None:
    r = model(split(("1", 50), ("2", 30), ("3", 20)), v("1"), v("2", state=LAUNCHING), v("3"))
    # 1 and 3 share 70: 1 takes 5/7 of it
    assert r.draw(0.71)[0] == "1"
    assert r.draw(0.72)[0] == "3"
    assert r.unready_refs().keys() == {"2"}


def test_no_ready_route_raises_the_first_routes_error() -> None:
    r = model(split(("1", 60), ("nope", 40)), v("1", state=LAUNCHING))
    with pytest.raises(UnavailableError):
        r.draw(0.5)
    with pytest.raises(NotFoundError):
        model(split(("nope", 100)), v("1")).draw(0.5)
    with pytest.raises(UnavailableError):  # one is starting: wait for it, not 404
        model(split(("nope", 60), ("1", 40)), v("1", state=LAUNCHING)).draw(0.5)


def test_default_is_production_else_latest() -> None:
    r = model(None, v("1", "Production"), v("2"))
    assert r.draw(0.5) == ("Production", r.versions["1"])
    r = model(None, v("1", "Production", LAUNCHING), v("2"))
    assert r.draw(0.5) == ("latest", r.versions["2"])
    r = model(split(), v("3"))  # no routes: the default too
    assert r.draw(0.5) == ("latest", r.versions["3"])
    with pytest.raises(NotFoundError):
        model(None).draw(0.5)
    with pytest.raises(UnavailableError):  # no Production; latest is starting: wait for it
        model(None, v("1", state=LAUNCHING)).draw(0.5)


def test_shadow_is_drawn_for_its_percent_when_ready() -> None:
    r = model(split(("1", 100), shadow=("2", 10)), v("1"), v("2"))
    assert r.shadow(0.05) == ("2", r.versions["2"])
    assert r.shadow(0.1) is None
    unready = model(split(("1", 100), shadow=("2", 10)), v("1"), v("2", state=LAUNCHING))
    assert unready.shadow(0.05) is None
    assert unready.unready_refs().keys() == {"2"}
    assert model(None, v("1")).shadow(0.0) is None


def test_readiness_notices_once_per_change() -> None:
    config = split(("1", 90), ("2", 10))
    down = readiness_notices(config, set(), {"2": "not ready"})
    assert down == [
        (
            "TRAFFIC_REF_UNAVAILABLE",
            "Ref '2' takes no traffic (its 10% goes to the other routes): not ready",
        )
    ]
    assert readiness_notices(config, {"2"}, {"2": "still not ready"}) == []
    assert readiness_notices(config, {"2"}, {}) == [
        ("TRAFFIC_REF_AVAILABLE", "Ref '2' is READY and takes traffic again.")
    ]


def test_followers_get_the_traffic_config_with_the_routes() -> None:
    config = split(("1", 90), ("2", 10), shadow=("champion", 5))

    class Codec:
        def addresses(self, target: object) -> list[str]:
            return ["a"]

    routes = model(config, v("1"), v("2"), champion="2")
    decoded, _ = decode_routes("m", encode_routes(routes, Codec()))  # type: ignore[arg-type]
    assert decoded.traffic == config
    bare = dataclasses.replace(routes, traffic=None)
    assert decode_routes("m", encode_routes(bare, Codec()))[0].traffic is None  # type: ignore[arg-type]
