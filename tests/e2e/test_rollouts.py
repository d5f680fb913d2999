"""Rollouts under load: a new version arriving, a stage moving, an alias moving and a version
being archived, each while clients score, with no failed and no misrouted request.

Every answer names the version that answered (``X-Model-Version``); during each move a ref
may answer from the version it pointed at before or the one it points at after, nothing
else, and a version-number ref only from that version.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from tests.support.load import ScoringLoad
from tests.support.registry import UserRegistry, user_registry
from tests.support.server import ADMIN_TOKEN, RegServeProcess, wait_for

pytestmark = pytest.mark.e2e

MODEL = "rolling"


@pytest.fixture
def served(
    regserve: RegServeProcess, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[RegServeProcess, UserRegistry]]:
    with user_registry(monkeypatch, regserve.url, ADMIN_TOKEN) as registry:
        assert registry.register(MODEL) == "1"
        registry.stage(MODEL, "1", "Production")
        registry.alias(MODEL, "champion", "1")
        assert regserve.enable(MODEL).status_code == 200
        regserve.wait_version_state(MODEL, "1", "VERSION_STATE_READY")
        yield regserve, registry


def _during(
    server: RegServeProcess,
    allowed: dict[str, set[str]],
    move: Callable[[], object],
    moved: str,
    to: str,
) -> ScoringLoad:
    """Score every ref of ``allowed`` while ``move()`` runs, until ``moved`` answers from ``to``."""
    load = ScoringLoad(server.url, ADMIN_TOKEN, MODEL, list(allowed), clients=2)
    with load:
        wait_for(lambda: load.count() >= 20, 30, "load to be running")
        move()
        wait_for(lambda: load.last_version(moved) == to, 120, f"{moved} to answer from v{to}")
        sent = load.count()
        wait_for(lambda: load.count() >= sent + 20, 30, "load after the move")
    assert load.failures() == [], load.failures()[:5]
    for ref, versions in allowed.items():
        assert load.versions(ref) <= versions, (ref, load.versions(ref))
    return load


def test_rollouts_under_load_fail_and_misroute_nothing(
    served: tuple[RegServeProcess, UserRegistry],
) -> None:
    server, registry = served
    one, both = {"1"}, {"1", "2"}

    # A new version arrives: latest moves to it once it is READY; the rest stay.
    _during(
        server,
        {"latest": both, "1": one, "Production": one, "champion": one},
        lambda: registry.register(MODEL, c=0.5),
        "latest",
        "2",
    )

    # The Production stage moves to version 2 (version 1 stays in Production: the highest wins).
    _during(
        server,
        {"Production": both, "1": one, "champion": one, "2": {"2"}},
        lambda: registry.stage(MODEL, "2", "Production"),
        "Production",
        "2",
    )

    # The alias moves.
    _during(
        server,
        {"champion": both, "1": one, "2": {"2"}},
        lambda: registry.alias(MODEL, "champion", "2"),
        "champion",
        "2",
    )

    # The version every stage and latest ref answers from is archived: they fall back to 1
    # while version 2's worker finishes what it was sent and stops.
    load = _during(
        server,
        {"Production": both, "latest": both, "1": one},
        lambda: registry.stage(MODEL, "2", "Archived"),
        "Production",
        "1",
    )
    assert load.last_version("latest") == "1"
    # VERSION_REMOVED is recorded once its worker has answered what it was sent and stopped.
    removed = wait_for(
        lambda: [e for e in server.events(MODEL) if e["event_type"] == "VERSION_REMOVED"],
        60,
        "version 2 to be removed",
    )
    assert "archived" in removed[0]["message"], removed
    assert "2" not in server.versions(MODEL)
