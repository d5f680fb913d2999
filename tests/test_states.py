"""How an endpoint's state follows from its versions'."""

from __future__ import annotations

from regserve.states import endpoint_state


def test_no_versions_is_ready() -> None:
    state, message = endpoint_state({})
    assert state == "ENDPOINT_STATE_READY"
    assert "no active version" in message


def test_one_ready_is_enough() -> None:
    state, message = endpoint_state(
        {"1": ("VERSION_STATE_READY", ""), "2": ("VERSION_STATE_FAILED", "boom")}
    )
    assert state == "ENDPOINT_STATE_READY"
    assert "failed: v2" in message


def test_pending_until_one_is_ready() -> None:
    state, _ = endpoint_state(
        {"1": ("VERSION_STATE_LAUNCHING", ""), "2": ("VERSION_STATE_FAILED", "")}
    )
    assert state == "ENDPOINT_STATE_PENDING"


def test_all_failed_is_failed_with_a_reason() -> None:
    state, message = endpoint_state({"3": ("VERSION_STATE_FAILED", "no module named torch")})
    assert state == "ENDPOINT_STATE_FAILED"
    assert "no module named torch" in message
