"""The one setting for a slow machine: ``REGSERVE_TEST_TIME_SCALE`` multiplies every wait."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable

import pytest

__all__ = ["TIME_SCALE", "eventually", "scaled"]

TIME_SCALE = float(os.environ.get("REGSERVE_TEST_TIME_SCALE", "1"))


def scaled(seconds: float) -> float:
    """``seconds`` on this machine (see ``TIME_SCALE``)."""
    return seconds * TIME_SCALE


async def eventually(check: Callable[[], object], what: str, timeout: float = 120) -> None:
    """Wait on the event loop until ``check()`` is true, at most ``timeout`` seconds (scaled);
    fail the test naming ``what`` otherwise. For in-process tests of asyncio code."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + scaled(timeout)
    while not check():
        if loop.time() > deadline:
            pytest.fail(f"not {what} after {scaled(timeout):g} s")
        await asyncio.sleep(0.05)
