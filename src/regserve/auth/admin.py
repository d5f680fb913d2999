"""The bootstrap admin token: ``REGSERVE_ADMIN_TOKEN``, or one made once and kept 0600 (with
the prefix of every regserve token, so that secret scanners know it; a file written by an
earlier version, ``rs-...``, is read as it is)."""

from __future__ import annotations

import os
from pathlib import Path

from regserve.auth.tokens import new_token

__all__ = ["ensure_admin_token"]


def ensure_admin_token(configured: str | None, data_dir: Path) -> tuple[str, bool]:
    """The admin token and whether it was just created (so it is printed once)."""
    if configured:
        return configured, False
    path = data_dir / "admin-token"
    try:
        return path.read_text().strip(), False
    except FileNotFoundError:
        pass
    token = new_token()
    data_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(token + "\n")
    return token, True
