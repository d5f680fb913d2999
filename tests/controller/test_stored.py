"""What a restart serves before its registry is ready (controller/stored.py), read from a real
state store on SQLite and real model folders."""

from __future__ import annotations

from pathlib import Path

from regserve.controller.stored import stored_snapshot, stored_versions
from regserve.router import ModelRoutes, ServedVersion
from regserve.states import VersionState
from regserve.store import ClusterConfig, StateStore


def _store(tmp_path: Path) -> StateStore:
    store = StateStore(f"sqlite:///{tmp_path / 'state.db'}")
    store.migrate()
    return store


def _files(models: Path, relative: str) -> str:
    (models / relative).mkdir(parents=True)
    (models / relative / "MLmodel").write_text("flavors: {}\n")
    return relative


def test_the_versions_stored_ready_with_their_files_on_disk(tmp_path: Path) -> None:
    store, models = _store(tmp_path), tmp_path / "models"
    ready, pending = VersionState.READY, VersionState.PENDING
    for name in ("served", "old-data-dir", "files-gone", "escapes", "disabled"):
        store.enable(name, ClusterConfig("local-default"))
    store.disable("disabled")
    store.put_version("served", "1", ready, "", files=_files(models, "served/1-a"))
    store.put_version("served", "2", ready, "", files=_files(models, "served/2-b"))
    store.put_version("served", "3", pending, "", files=_files(models, "served/3-c"))
    # a READY version without recorded files (served before they were recorded): the model
    # waits for the registry, as it did before
    store.put_version("old-data-dir", "1", ready, "", files=_files(models, "old/1-a"))
    store.put_version("old-data-dir", "2", ready, "")
    store.put_version("files-gone", "1", ready, "", files="gone/1-a")
    _files(tmp_path, "outside")
    store.put_version("escapes", "1", ready, "", files="../outside")
    store.put_version("disabled", "1", ready, "", files=_files(models, "disabled/1-a"))
    try:
        found = stored_versions(store, models)
    finally:
        store.close()
    assert found == {"served": {"1": models / "served/1-a", "2": models / "served/2-b"}}


def test_the_stand_in_snapshot_takes_stages_and_aliases_from_the_stored_routes() -> None:
    versions = {"1": Path("/m/1"), "2": Path("/m/2"), "10": Path("/m/10")}
    routes = ModelRoutes(
        "iris",
        {
            "1": ServedVersion("1", "Staging", VersionState.READY, ""),
            "2": ServedVersion("2", "Production", VersionState.READY, ""),
        },
        {"champion": "2", "old": "1", "gone": "7"},
    )
    snapshot = stored_snapshot("iris", versions, routes)
    assert [(v.version, v.stage, v.aliases) for v in snapshot.versions] == [
        ("1", "Staging", ("old",)),
        ("2", "Production", ("champion",)),
        ("10", "None", ()),
    ]
    assert snapshot.aliases == {"champion": "2", "old": "1", "gone": "7"}
    assert {v.status for v in snapshot.versions} == {"READY"}
    bare = stored_snapshot("iris", versions, None)
    assert [v.stage for v in bare.versions] == ["None", "None", "None"]
    assert bare.aliases == {}
