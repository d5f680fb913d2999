"""The start queue in process: at most its slots held at once, waiting starts taken by
priority then in order, each told its place as it moves, starts that come together settled
before the first takes a slot, and a cancelled wait leaving the line."""

from __future__ import annotations

import asyncio

import pytest

from regserve.backends.local.start_queue import StartPriority, StartQueue, Turn, Urgency
from tests.support.timing import eventually

OTHER = StartPriority.of(Urgency.OTHER, 0)


async def _hold(
    queue: StartQueue,
    name: str,
    priority: StartPriority,
    log: list[str],
    release: asyncio.Event,
    places: list[int] | None = None,
) -> Turn:
    ahead = places.append if places is not None else None
    async with queue.turn(priority, ahead) as turn:
        log.append(name)
        await release.wait()
    return turn


async def test_at_most_its_slots_start_at_once_and_the_rest_go_by_priority() -> None:
    queue = StartQueue(2, settle=0)  # a and b take the free slots as they come
    log: list[str] = []
    gates = {name: asyncio.Event() for name in "abcdefgh"}
    priorities = {
        "a": OTHER,
        "b": OTHER,
        "c": StartPriority.of(Urgency.OTHER, 1),  # older than d: after it
        "d": StartPriority.of(Urgency.OTHER, 2),
        "e": StartPriority.of(Urgency.POINTED_AT, 0),
        "f": StartPriority.of(Urgency.RESTART, 0),
        "g": StartPriority.of(Urgency.CALLED, 0, called_at=1),
        "h": StartPriority.of(Urgency.CALLED, 5, called_at=2),  # called last: before g
    }
    tasks = {}
    for name in "abcdefgh":
        tasks[name] = asyncio.create_task(_hold(queue, name, priorities[name], log, gates[name]))
        await asyncio.sleep(0)
    await eventually(lambda: log == ["a", "b"], "the first two started")
    assert (queue.running, queue.waiting) == (2, 6)
    for done in range(8):  # the first running one finishes, the next by priority starts
        name = log[done]
        gates[name].set()
        await tasks[name]
        assert queue.running <= 2
    assert log == ["a", "b", "f", "e", "h", "g", "d", "c"]
    assert (queue.running, queue.waiting) == (0, 0)


async def test_a_waiting_start_is_told_its_place_and_how_long_it_waited() -> None:
    queue = StartQueue(1)
    log: list[str] = []
    first, second, third = asyncio.Event(), asyncio.Event(), asyncio.Event()
    places: list[int] = []
    running = asyncio.create_task(_hold(queue, "a", OTHER, log, first))
    await eventually(lambda: log == ["a"], "a started")
    before = asyncio.create_task(_hold(queue, "b", OTHER, log, second))
    await asyncio.sleep(0)
    waiting = asyncio.create_task(_hold(queue, "c", OTHER, log, third, places))
    await eventually(lambda: places == [1], "c told: one ahead")
    await asyncio.sleep(0.2)
    first.set()
    assert not (await running).queued
    await eventually(lambda: places == [1, 0], "c told: none ahead")
    second.set()
    await before
    third.set()
    turn = await waiting
    assert (turn.queued, turn.ahead) == (True, 1)
    assert turn.waited >= 0.2


async def test_starts_that_come_together_take_the_free_slots_by_priority() -> None:
    """An enable's starts come one by one as their downloads end: the free slots go to the
    most urgent of those that came within ``settle`` of each other, not to the first two."""
    queue = StartQueue(2, settle=0.3, settle_max=5)
    log: list[str] = []
    release = asyncio.Event()
    priorities = {
        "old": StartPriority.of(Urgency.OTHER, 1),
        "new": StartPriority.of(Urgency.OTHER, 2),
        "production": StartPriority.of(Urgency.POINTED_AT, 0),
        "called": StartPriority.of(Urgency.CALLED, 0, called_at=1),
    }
    tasks = {}
    for name, priority in priorities.items():
        tasks[name] = asyncio.create_task(_hold(queue, name, priority, log, release))
        await asyncio.sleep(0.1)  # each well within the settle time of the one before
    await eventually(lambda: len(log) == 2, "two started")
    assert log == ["production", "called"]
    assert (queue.running, queue.waiting) == (2, 2)
    release.set()
    turns = {name: await task for name, task in tasks.items()}
    assert log == ["production", "called", "new", "old"]
    assert not turns["production"].queued  # it only settled: "at once"
    assert turns["production"].waited >= 0.3
    assert turns["old"].queued


async def test_a_lone_start_waits_the_settle_time_and_a_burst_at_most_settle_max() -> None:
    queue = StartQueue(1, settle=0.2, settle_max=0.5)
    log: list[str] = []
    release = asyncio.Event()
    release.set()
    turn = await _hold(queue, "alone", OTHER, log, release)
    assert (turn.queued, turn.ahead) == (False, 0)
    assert 0.2 <= turn.waited < 1.0
    log.clear()
    hold = asyncio.Event()
    first = asyncio.create_task(_hold(queue, "first", OTHER, log, hold))
    began = asyncio.get_running_loop().time()
    later = []
    urgent = StartPriority.of(Urgency.RESTART, 0)
    while not log:  # a start every 0.1 s: never 0.2 s of quiet, so settle_max ends it
        later.append(asyncio.create_task(_hold(queue, "later", urgent, log, hold)))
        await asyncio.sleep(0.1)
    assert 0.5 <= asyncio.get_running_loop().time() - began < 1.5
    assert log == ["later"]  # the most urgent that had come
    hold.set()
    await asyncio.gather(first, *later)
    assert (queue.running, queue.waiting) == (0, 0)


async def test_a_start_cancelled_while_waiting_leaves_the_line() -> None:
    queue = StartQueue(1)
    log: list[str] = []
    gate, later = asyncio.Event(), asyncio.Event()
    running = asyncio.create_task(_hold(queue, "a", OTHER, log, gate))
    await eventually(lambda: log == ["a"], "a started")
    cancelled = asyncio.create_task(_hold(queue, "b", OTHER, log, later))
    after = asyncio.create_task(_hold(queue, "c", OTHER, log, later))
    await eventually(lambda: queue.waiting == 2, "two waiting")
    cancelled.cancel()
    with pytest.raises(asyncio.CancelledError):
        await cancelled
    assert queue.waiting == 1
    gate.set()
    later.set()
    await running
    await after
    assert log == ["a", "c"]
    assert (queue.running, queue.waiting) == (0, 0)


def test_a_queue_has_at_least_one_slot() -> None:
    with pytest.raises(ValueError, match="at least one slot"):
        StartQueue(0)


async def test_a_restart_that_finds_a_free_slot_takes_it_without_settling() -> None:
    """A version that was serving (crashed, or idle and woken by a request) has callers
    waiting: it does not wait the 0.2 s for others that might come."""
    queue = StartQueue(2)
    log: list[str] = []
    release = asyncio.Event()
    release.set()
    turn = await _hold(queue, "restart", StartPriority.of(Urgency.RESTART, 0), log, release)
    assert (turn.queued, turn.ahead) == (False, 0)
    assert turn.waited < 0.1
    turn = await _hold(queue, "other", OTHER, log, release)
    assert turn.waited >= 0.2  # the others still settle
