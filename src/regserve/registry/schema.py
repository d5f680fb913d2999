"""A new hosted registry database from a prepared schema instead of MLflow's migrations.

MLflow creates its SQLite database by running every one of its migrations (about 4 s on a
busy 2-core machine, on every fresh data dir). ``mlflow_schema.sql`` holds what they produce
for one MLflow version (its first line names it): with that version installed, a new
database is that script, executed in milliseconds, and MLflow finds it at its head revision
(then creates its default experiment itself). Any other version: MLflow migrates as usual.

Regenerate it after changing MLflow's version in ``requirements.lock``:
``python -m regserve.registry.schema > src/regserve/registry/mlflow_schema.sql``
(``tests/registry/test_schema.py`` fails while it is stale).
"""

from __future__ import annotations

import os
import sqlite3
import sys
import tempfile
from importlib import resources
from importlib.metadata import version
from pathlib import Path

__all__ = ["dump_schema", "prepare_database", "prepared_schema"]

_HEADER = "-- MLflow "
_FILE = "mlflow_schema.sql"
_SKIPPED = ('INSERT INTO "experiments"',)
"""Rows MLflow writes itself when they are missing (the default experiment, with its time)."""


def prepared_schema() -> str | None:
    """The shipped script when it was made for the installed MLflow, else None."""
    text = (resources.files("regserve.registry") / _FILE).read_text()
    first = text.partition("\n")[0]
    return text if first == f"{_HEADER}{version('mlflow')}" else None


def prepare_database(path: Path) -> bool:
    """Create ``path`` from the prepared schema unless it exists; whether it did."""
    script = prepared_schema()
    if path.exists() or script is None:
        return False
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    connection = sqlite3.connect(tmp)
    try:
        connection.executescript(script)
    finally:
        connection.close()
    os.replace(tmp, path)  # whole or not at all: a half-made file would look migrated
    return True


def dump_schema(path: Path) -> str:
    """The script that recreates the MLflow database at ``path`` (as MLflow made it)."""
    connection = sqlite3.connect(path)
    try:
        lines = [line for line in connection.iterdump() if not line.startswith(_SKIPPED)]
    finally:
        connection.close()
    return "\n".join([f"{_HEADER}{version('mlflow')}", *lines, ""])


def _migrated_by_mlflow() -> str:
    """Run MLflow's own migrations on an empty database; its script."""
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "mlflow.db"
        store = SqlAlchemyStore(f"sqlite:///{db}", f"{tmp}/artifacts")  # type: ignore[no-untyped-call]
        store.engine.dispose()
        return dump_schema(db)


if __name__ == "__main__":
    sys.stdout.write(_migrated_by_mlflow())
