"""Where regserve keeps a version's local copy: one place per registered version, any name."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from regserve.controller.model_files import local_model_folder, local_model_path
from regserve.registry.models import VersionInfo

MODELS = Path("/data/models")
V1 = VersionInfo("victim", "1", "Production", "READY", (), "models:/m-1", "r1", 1000)


def test_a_version_created_again_under_the_same_name_and_number_has_its_own_copy() -> None:
    again = dataclasses.replace(V1, creation_timestamp=2000)
    assert local_model_path(MODELS, V1) != local_model_path(MODELS, again)
    other_files = dataclasses.replace(V1, source="models:/m-2", run_id="r2")
    assert local_model_path(MODELS, V1) != local_model_path(MODELS, other_files)
    assert local_model_path(MODELS, V1) == local_model_path(MODELS, dataclasses.replace(V1))
    assert local_model_path(MODELS, V1).name.startswith("1-")


def test_every_name_is_a_safe_folder_of_its_own() -> None:
    names = ["a b", "a_b", "a%20b", "p%q,r", "line\nbreak", "..", "é", "x" * 300]
    folders = {local_model_folder(MODELS, name) for name in names}
    assert len(folders) == len(names)
    for name in names:
        path = local_model_path(MODELS, dataclasses.replace(V1, name=name))
        assert path.parent == local_model_folder(MODELS, name)
        assert path.parent.parent == MODELS
        assert "%" not in str(path)
        assert "\n" not in str(path)
        assert len(path.parent.name) <= 60
