"""The prepared MLflow schema is what MLflow's own migrations make, and MLflow takes it."""

from __future__ import annotations

from pathlib import Path

from regserve.registry.schema import _migrated_by_mlflow, prepare_database, prepared_schema


def _statements(script: str | None) -> list[str]:
    """Its lines in a fixed order: MLflow creates some indexes, and writes some constraints of
    a table, in an order that varies from run to run."""
    assert script is not None, "mlflow_schema.sql names another MLflow version"
    return sorted(line.strip().rstrip(",").strip() for line in script.splitlines())


def test_the_shipped_schema_is_what_the_installed_mlflow_migrates_to() -> None:
    assert _statements(prepared_schema()) == _statements(_migrated_by_mlflow()), (
        "src/regserve/registry/mlflow_schema.sql is stale: run "
        "`python -m regserve.registry.schema > src/regserve/registry/mlflow_schema.sql`"
    )


def test_a_prepared_database_is_made_once_and_mlflow_uses_it(tmp_path: Path) -> None:
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    db = tmp_path / "mlflow.db"
    assert prepare_database(db)
    assert not prepare_database(db)  # never over an existing database
    store = SqlAlchemyStore(f"sqlite:///{db}", str(tmp_path / "artifacts"))
    assert [e.name for e in store.search_experiments()] == ["Default"]
    store.engine.dispose()
