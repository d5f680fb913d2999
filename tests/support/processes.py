"""Processes the tests start or watch."""

from __future__ import annotations

import os

__all__ = ["alive"]


def alive(pid: int) -> bool:
    """Does ``pid`` exist (a zombie not yet reaped counts)?"""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
