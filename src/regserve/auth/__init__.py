"""Principals, tokens and permissions on registered models (see docs/security.md)."""

from __future__ import annotations

from regserve.auth.admin import ensure_admin_token

__all__ = ["ensure_admin_token"]
