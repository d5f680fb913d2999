"""The change feed on both stores: what one gateway publishes, another receives at once,
and a gateway never receives its own changes."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from regserve.gateways.changes import GRANTS, TOKENS, Change, change_feed_for
from regserve.store import StateStore
from tests.gateways.test_leader import pg_uri

__all__ = ["pg_uri"]  # the fixture, re-used


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StateStore]:
    if request.param == "sqlite":
        uri = f"sqlite:///{tmp_path / 'state.db'}"
    else:
        uri = request.getfixturevalue("pg_uri")
    s = StateStore(uri)
    s.migrate()
    yield s
    s.close()


def test_a_change_reaches_the_other_gateway_not_its_own(store: StateStore) -> None:
    async def scenario() -> tuple[list[Change], list[Change]]:
        a, b = change_feed_for(store, "gw-a"), change_feed_for(store, "gw-b")
        seen_a: list[Change] = []
        seen_b: list[Change] = []
        tasks = [
            asyncio.create_task(a.run(seen_a.append)),
            asyncio.create_task(b.run(seen_b.append)),
        ]
        await asyncio.sleep(0.7)  # both listening
        a.publish(TOKENS)
        a.publish(GRANTS, "m")
        for _ in range(40):
            if len(seen_b) >= 2:
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.6)  # a poll more: nothing of its own reaches a
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        return seen_a, seen_b

    seen_a, seen_b = asyncio.run(scenario())
    # Each publish is its own write (in a thread): the order is not kept, and need not be.
    assert sorted(seen_b, key=str) == sorted([Change(TOKENS, ""), Change(GRANTS, "m")], key=str)
    assert seen_a == []
