"""TrafficRecorder's per-minute rows: the queue depth and the batches beside the traffic."""

from __future__ import annotations

from regserve.metrics import TrafficRecorder


def test_queue_depth_is_the_most_requests_open_at_once() -> None:
    recorder = TrafficRecorder()
    for _ in range(3):
        recorder.opened("m", "1")
    recorder.closed("m", "1")
    recorder.opened("m", "1")  # 3 open again, not 4
    recorder.opened("m", "2")
    (one, two) = sorted(recorder.drain(), key=lambda row: row["version"])
    assert one["queue_depth_max"] == 3
    assert two["queue_depth_max"] == 1
    # Still open after the drain: the next rows see them when they are answered.
    for _ in range(3):
        recorder.closed("m", "1")
    (row,) = recorder.drain()
    assert row["queue_depth_max"] == 3
    assert row["requests"] == 0


def test_batches_add_up_and_keep_the_largest() -> None:
    recorder = TrafficRecorder()
    recorder.add_batches("m", "1", batches=0, requests=0, largest=0)
    assert recorder.drain() == []  # nothing ran: no row
    recorder.add_batches("m", "1", batches=2, requests=5, largest=4)
    recorder.add_batches("m", "1", batches=3, requests=3, largest=1)
    recorder.observe("m", "1", "1", 200, 0.01)
    (row,) = recorder.drain()
    assert (row["batches"], row["batched_requests"], row["batch_size_max"]) == (5, 8, 4)
    assert row["queue_depth_max"] is None  # observed without being sent through dispatch
    assert row["requests"] == 1
