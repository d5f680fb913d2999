"""Shared fixtures and the rule that a missing service fails in CI instead of skipping."""

from __future__ import annotations

import os

import pytest


def require_service(reason: str) -> None:
    """Skip a test whose service is missing here; fail instead when CI demands every service."""
    if os.environ.get("REGSERVE_TEST_REQUIRE_SERVICES"):
        pytest.fail(f"required service missing in CI: {reason}")
    pytest.skip(reason)
