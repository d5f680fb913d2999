"""Principals and tokens. Today: the bootstrap admin token."""

from __future__ import annotations

from regserve.auth.admin import ensure_admin_token

__all__ = ["ensure_admin_token"]
