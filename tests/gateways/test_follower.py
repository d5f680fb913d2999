"""SharedRouter in-process, as a follower: it routes the stored table, and names the models it
cannot reach yet (``unreached``, which ``/health`` reports as ``routes``) until its codec can
make their targets; then it serves them without waiting for the next reload."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

from regserve.gateways.changes import change_feed_for
from regserve.gateways.follower import SharedRouter
from regserve.router import ModelRoutes, ServedVersion, Target
from regserve.states import VersionState
from regserve.store import StateStore
from regserve.worker import wire


class _Answer:
    async def request(self, content_type: str | None, body: bytes, timeout: float) -> wire.Response:
        return wire.Response(200, "application/json", b"{}")


class _CodecConnectingLater:
    """Like RayTargets before its cluster connection is up: addresses it cannot use yet."""

    def __init__(self) -> None:
        self.connected = False
        self.wake: Callable[[], None] = lambda: None

    def start(self, wake: Callable[[], None]) -> None:
        self.wake = wake

    def addresses(self, target: Target) -> list[str]:
        return ["ray:app/v1"]

    def target(self, model_name: str, version: str, addresses: Sequence[str]) -> Target | None:
        return _Answer() if self.connected else None

    def close(self, target: Target) -> None:
        pass


def test_a_follower_names_what_it_cannot_reach_until_its_codec_connects(
    store: StateStore,
) -> None:
    leader = SharedRouter(store, _CodecConnectingLater(), change_feed_for(store, "gw-a"))
    codec = _CodecConnectingLater()
    # a long interval: only the codec's wake can make the follower reload in time
    follower = SharedRouter(store, codec, change_feed_for(store, "gw-b"), interval=60)

    async def scenario() -> None:
        leader.lead()
        writing = asyncio.create_task(leader.write_loop())
        ready = ServedVersion("1", "None", VersionState.READY, "", _Answer())
        leader.publish(ModelRoutes("m", {"1": ready}, {}))
        for _ in range(100):
            if store.all_routes():
                break
            await asyncio.sleep(0.02)
        following = asyncio.create_task(follower.follow_loop())
        await asyncio.sleep(0.2)
        assert follower.unreached == ["m"]
        routes = follower.get("m")
        assert routes is not None
        assert routes.versions["1"].target is None  # known, not reachable yet: 503 meanwhile
        assert leader.unreached == []  # a leader reaches its own targets

        codec.connected = True
        codec.wake()  # as RayTargets does once connected
        await asyncio.sleep(0.2)
        assert follower.unreached == []
        routes = follower.get("m")
        assert routes is not None
        assert routes.versions["1"].target is not None
        for task in (writing, following):
            task.cancel()
        await asyncio.gather(writing, following, return_exceptions=True)

    asyncio.run(scenario())


def test_a_new_leader_reaches_the_stored_routes_once_its_codec_connects(
    store: StateStore,
) -> None:
    """After a restart on Ray: the stored table names the applications the previous process
    left; the new leader serves them as soon as it is connected, before its controller adopts
    them (``route_stored``, tried again when the codec wakes it)."""
    before = SharedRouter(store, _CodecConnectingLater(), change_feed_for(store, "gw-a"))
    codec = _CodecConnectingLater()
    restarted = SharedRouter(store, codec, change_feed_for(store, "gw-b"), interval=60)

    async def scenario() -> None:
        before.lead()
        writing = asyncio.create_task(before.write_loop())
        ready = ServedVersion("1", "None", VersionState.READY, "", _Answer())
        before.publish(ModelRoutes("m", {"1": ready}, {}))
        for _ in range(100):
            if store.all_routes():
                break
            await asyncio.sleep(0.02)
        writing.cancel()
        await asyncio.gather(writing, return_exceptions=True)

        restarted.lead()
        await restarted.route_stored()
        following = asyncio.create_task(restarted.follow_loop())
        await asyncio.sleep(0.2)
        routes = restarted.get("m")
        assert routes is not None
        assert routes.versions["1"].target is None  # known, not reachable yet: requests wait

        codec.connected = True
        codec.wake()  # as RayTargets does once connected
        await asyncio.sleep(0.2)
        routes = restarted.get("m")
        assert routes is not None
        assert routes.versions["1"].target is not None
        following.cancel()
        await asyncio.gather(following, return_exceptions=True)

    asyncio.run(scenario())
