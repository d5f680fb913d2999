"""The local backend: one worker subprocess per served version on this machine."""

from __future__ import annotations

from regserve.backends.local.backend import LocalBackend

__all__ = ["LocalBackend"]
