"""The soak's judgement of its outcomes: misrouted answers and failure causes.

The soak itself is not run in CI: its set-up alone (regserve, two versions READY) takes
longer than the 30 s a smoke run may cost; ``make soak`` runs it.
"""

from __future__ import annotations

from bench.soak_load import Outcome, Timeline


def test_a_ref_may_answer_from_every_version_it_pointed_at_in_the_window() -> None:
    timeline = Timeline()
    timeline.point("Production", {"1"}, at=0)
    timeline.point("Production", {"1", "2"}, at=100)  # the move: 2 joins, then 1 leaves
    timeline.point("Production", {"2"}, at=101)
    assert timeline.allowed("Production", 10, 20) == {"1"}
    assert timeline.allowed("Production", 90, 99) == {"1"}
    assert timeline.allowed("Production", 99, 100.5) == {"1", "2"}
    assert timeline.allowed("Production", 102, 103) == {"2"}
    assert timeline.allowed("Production", 102 - 15, 103) == {"1", "2"}  # the routing lag
    assert timeline.allowed("7", 0, 1) == {"7"}  # a version URL answers from that version


def test_failure_causes_name_the_status_or_the_error() -> None:
    assert Outcome("1", 0, 1, 200, None, "1").cause is None
    assert Outcome("1", 0, 1, 503, None, None).cause == "status 503"
    assert Outcome("1", 0, 1, None, "ConnectError", None).cause == "ConnectError"
