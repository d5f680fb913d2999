"""A fresh PostgreSQL database on this machine's server (127.0.0.1:5432, trust auth) for tests.

Where the server is missing the test skips, or fails in CI (``require_service``).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

from sqlalchemy import create_engine, text

from tests.conftest import require_service

__all__ = ["PG_ADMIN", "fresh_database"]

PG_ADMIN = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"


def fresh_database(prefix: str) -> Iterator[str]:
    """Create an empty database, yield its SQLAlchemy URI, drop it (for ``yield from``)."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    try:
        admin = create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
        with admin.connect() as c:
            c.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:  # any connection failure means the service is missing here
        require_service(f"PostgreSQL at 127.0.0.1:5432 is not reachable: {exc}")
    yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    with admin.connect() as c:
        c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()
