"""Shadow copies in process: sent off the caller's path, every outcome handed to the sinks,
never raised; bounded in flight."""

from __future__ import annotations

import asyncio

from regserve.gateway.mirror import Mirror, ShadowAnswer
from regserve.router import ServedVersion
from regserve.states import VersionState
from regserve.worker import wire


class Target:
    """Answers after ``release`` is set; raises when ``fail``."""

    def __init__(self, fail: bool = False) -> None:
        self.release = asyncio.Event()
        self.fail = fail
        self.bodies: list[bytes] = []

    async def request(self, content_type: str | None, body: bytes, timeout: float) -> wire.Response:
        self.bodies.append(body)
        await self.release.wait()
        if self.fail:
            raise RuntimeError("the shadow broke")
        return wire.Response(200, "application/json", b'{"predictions": [2]}')


def _served(target: Target) -> ServedVersion:
    return ServedVersion("2", "None", VersionState.READY, "", target)


async def test_a_copy_does_not_wait_and_its_answer_goes_to_every_sink() -> None:
    seen: list[ShadowAnswer] = []
    target = Target()

    def broken_sink(answer: ShadowAnswer) -> None:
        raise ValueError("a sink's bug")

    mirror = Mirror(5.0, [broken_sink, seen.append])
    mirror.send("m", "canary", _served(target), "application/json", b'{"inputs": [1]}')
    assert mirror.in_flight == 1  # sent returned at once; the copy is still waiting
    await asyncio.sleep(0.05)
    assert seen == []
    target.release.set()
    await mirror.drain()
    assert len(seen) == 1
    answer = seen[0]
    assert (answer.model, answer.ref, answer.version, answer.outcome) == ("m", "canary", "2", "200")
    assert answer.request == b'{"inputs": [1]}'
    assert answer.reply is not None
    assert answer.reply.body == b'{"predictions": [2]}'


async def test_a_failing_shadow_is_an_outcome_not_an_exception() -> None:
    seen: list[ShadowAnswer] = []
    target = Target(fail=True)
    target.release.set()
    mirror = Mirror(5.0, [seen.append])
    mirror.send("m", "3", _served(target), None, b"x")
    await mirror.drain()
    assert [(a.outcome, a.reply) for a in seen] == [("failed", None)]


async def test_copies_over_the_limit_are_dropped_and_counted() -> None:
    seen: list[ShadowAnswer] = []
    target = Target()
    mirror = Mirror(5.0, [seen.append], limit=2)
    for _ in range(3):
        mirror.send("m", "2", _served(target), None, b"x")
    assert [a.outcome for a in seen] == ["dropped"]
    assert len(target.bodies) <= 2
    target.release.set()
    await mirror.drain()
    assert sorted(a.outcome for a in seen) == ["200", "200", "dropped"]
