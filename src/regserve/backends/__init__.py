"""Backends run workers: ``local`` (subprocesses on this machine) and, later, ``ray``."""

from __future__ import annotations

from regserve.backends.base import Backend, VersionEvent, VersionSpec

__all__ = ["Backend", "VersionEvent", "VersionSpec"]
