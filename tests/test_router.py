"""Resolving ``/model/{name}/{ref}`` to a served version: pure, no I/O."""

from __future__ import annotations

import pytest

from regserve.errors import NotFoundError, UnavailableError
from regserve.router import ModelRoutes, Router, ServedVersion

READY, LAUNCHING, FAILED = "VERSION_STATE_READY", "VERSION_STATE_LAUNCHING", "VERSION_STATE_FAILED"


class FakeTarget:  # stands for a worker connection; resolution never calls it
    async def request(self, content_type: str | None, body: bytes, timeout: float) -> object:
        raise AssertionError("not called")


def v(version: str, stage: str = "None", state: str = READY) -> ServedVersion:
    return ServedVersion(version, stage, state, "msg", FakeTarget() if state == READY else None)


def routes(*versions: ServedVersion, **aliases: str) -> ModelRoutes:
    return ModelRoutes("m", {s.version: s for s in versions}, aliases)


def test_version_number_and_leading_zeros() -> None:
    r = routes(v("1"), v("2"))
    assert r.resolve("2").version == "2"
    assert r.resolve("02").version == "2"


def test_a_non_ascii_digit_is_an_unknown_alias_not_a_crash() -> None:
    # "²".isdigit() is True but int("²") raises (found by schemathesis as a 500).
    with pytest.raises(NotFoundError):
        routes(v("2")).resolve("²")


def test_stage_is_case_insensitive_and_picks_the_highest_ready() -> None:
    r = routes(v("1", "Production"), v("3", "Production"), v("4", "Production", LAUNCHING))
    assert r.resolve("production").version == "3"
    assert r.resolve("PRODUCTION").version == "3"


def test_stage_with_nothing_ready_is_503_and_empty_stage_is_404() -> None:
    r = routes(v("1", "Staging", LAUNCHING))
    with pytest.raises(UnavailableError):
        r.resolve("Staging")
    with pytest.raises(NotFoundError, match="stage Production"):
        r.resolve("Production")


def test_latest_is_the_highest_ready_version() -> None:
    assert routes(v("1"), v("2"), v("3", state=LAUNCHING)).resolve("latest").version == "2"


def test_aliases_with_and_without_at() -> None:
    r = routes(v("1"), v("2"), champion="1")
    assert r.resolve("champion").version == "1"
    assert r.resolve("@champion").version == "1"


def test_alias_on_an_unserved_version_says_why() -> None:
    with pytest.raises(NotFoundError, match="not served"):
        routes(v("2"), champion="1").resolve("champion")


def test_failed_version_is_503_with_its_message() -> None:
    with pytest.raises(UnavailableError, match="failed") as info:
        routes(v("1", state=FAILED)).resolve("1")
    assert info.value.retry_after >= 1


def test_router_unknown_model_and_withdraw() -> None:
    router = Router()
    router.publish(routes(v("1")))
    assert router.resolve("m", "1").version == "1"
    router.withdraw("m")
    with pytest.raises(NotFoundError, match="not served"):
        router.resolve("m", "1")


def test_a_version_with_more_digits_than_int_takes_resolves() -> None:
    # int() refuses more than 4,300 digits: a URL's ref may hold more (was a 500).
    r = routes(v("1"))
    assert r.resolve("0" * 5000 + "1").version == "1"
    with pytest.raises(NotFoundError, match=r"cut at \d+ characters"):
        r.resolve("9" * 5000)
