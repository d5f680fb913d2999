"""Fixtures for the command line: an environment without the caller's ``REGSERVE_*`` variables
(the CLI and ``regserve up`` read them)."""

from __future__ import annotations

import os

import pytest


@pytest.fixture
def no_regserve_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """``monkeypatch``, with every ``REGSERVE_*`` variable of this process removed first."""
    for name in [n for n in os.environ if n.startswith("REGSERVE_")]:
        monkeypatch.delenv(name)
    return monkeypatch
