"""Which files an artifact request or a version's source names, and how paths may be spelled."""

from __future__ import annotations

import pytest

from regserve.auth.artifact_rules import (
    LOGGED_MODEL,
    RUN,
    ArtifactLocation,
    ArtifactRequest,
    ModelReference,
    OwnedPath,
    StorePath,
    artifact_request,
    owner_candidates,
    source_reference,
)
from regserve.auth.mlflow_rules import Access, classify
from regserve.errors import InvalidParameterError

RUN_ID = "0123456789abcdef0123456789abcdef"
MODEL = "m-fedcba9876543210fedcba9876543210"
STORE = "/api/2.0/mlflow-artifacts/artifacts"


def _store(path: str) -> StorePath:
    return StorePath(tuple(path.split("/")))


@pytest.mark.parametrize(
    ("method", "path", "query", "expected"),
    [
        (
            "GET",
            f"{STORE}/1/models/{MODEL}/artifacts/MLmodel",
            {},
            (_store(f"1/models/{MODEL}/artifacts/MLmodel"), False),
        ),
        (
            "PUT",
            f"/ajax-api/2.0/mlflow-artifacts/artifacts/0/{RUN_ID}/artifacts/m/x.pkl",
            {},
            (_store(f"0/{RUN_ID}/artifacts/m/x.pkl"), True),
        ),
        ("DELETE", f"{STORE}/0//models/./{MODEL}", {}, (_store(f"0/models/{MODEL}"), True)),
        (
            "GET",
            STORE,
            {"path": f"0/{RUN_ID}/artifacts/model"},
            (_store(f"0/{RUN_ID}/artifacts/model"), False),
        ),
        ("GET", STORE, {}, (None, False)),
        (
            "POST",
            f"/api/2.0/mlflow-artifacts/mpu/create/team/7/{RUN_ID}/artifacts/m",
            {},
            (_store(f"team/7/{RUN_ID}/artifacts/m"), True),
        ),
        ("GET", "/api/2.0/mlflow-artifacts/presigned/0/x", {}, (_store("0/x"), True)),
        (
            "GET",
            "/get-artifact",
            {"run_uuid": RUN_ID, "path": "model/MLmodel"},
            (OwnedPath(RUN, RUN_ID, ("model", "MLmodel")), False),
        ),
        (
            "GET",
            "/api/2.0/mlflow/artifacts/list",
            {"run_id": RUN_ID},
            (OwnedPath(RUN, RUN_ID, ()), False),
        ),
        (
            "GET",
            f"/ajax-api/2.0/mlflow/logged-models/{MODEL}/artifacts/files",
            {"artifact_file_path": "./MLmodel"},
            (OwnedPath(LOGGED_MODEL, MODEL, ("MLmodel",)), False),
        ),
        ("GET", "/api/2.0/mlflow/artifacts/list", {}, (None, False)),
    ],
)
def test_artifact_requests(
    method: str, path: str, query: dict[str, str], expected: tuple[object, bool]
) -> None:
    found = artifact_request(method, path, query)
    assert isinstance(found, ArtifactRequest)
    assert (found.path, found.write) == expected


@pytest.mark.parametrize(
    ("path", "query"),
    [
        (f"{STORE}/0/x/../{RUN_ID}/artifacts", {}),
        ("/get-artifact", {"run_uuid": RUN_ID, "path": "../../etc"}),
        (f"{STORE}/0/{RUN_ID}/artifacts/%2E%2E/x", {}),  # encoded twice: MLflow decodes again
        (f"{STORE}/0/{RUN_ID}/artifacts/a%2Fb", {}),
        (f"{STORE}/0/{RUN_ID}/artifacts/a\\b", {}),
        (f"{STORE}/0/{RUN_ID}/artifacts/a\nb", {}),
        (f"{STORE}/file:0/{RUN_ID}/artifacts/x", {}),  # MLflow reads "file:x" as "x"
        ("/get-artifact", {"run_id": RUN_ID, "path": "model/%4Dlmodel"}),
    ],
)
def test_paths_that_could_name_something_else_are_refused(path: str, query: dict[str, str]) -> None:
    with pytest.raises(InvalidParameterError):
        artifact_request("DELETE", path, query)


def test_a_percent_sign_that_decodes_to_nothing_is_a_file_name() -> None:
    found = artifact_request("GET", f"{STORE}/0/{RUN_ID}/artifacts/100%.txt", {})
    assert found.path == _store(f"0/{RUN_ID}/artifacts/100%.txt")


def test_owner_candidates_are_found_by_mlflow_id_formats_outermost_first() -> None:
    parts = ("0", "models", MODEL, "artifacts", RUN_ID, "artifacts", "x")
    assert owner_candidates(parts) == [(LOGGED_MODEL, MODEL, 4), (RUN, RUN_ID, 6)]
    assert owner_candidates(("0", MODEL, "artifacts")) == []  # a logged model is under models/
    assert owner_candidates(("0", "notarun", "artifacts")) == []


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        (f"models:/{MODEL}", OwnedPath(LOGGED_MODEL, MODEL, ())),
        ("models:/victim/2", ModelReference("victim")),
        ("models:/victim/Production", ModelReference("victim")),
        ("models:/a b@champion", ModelReference("a b")),
        (f"runs:/{RUN_ID}/model", OwnedPath(RUN, RUN_ID, ("model",))),
        (f"mlflow-artifacts:/0/{RUN_ID}/artifacts/model", _store(f"0/{RUN_ID}/artifacts/model")),
        (
            f"mlflow-artifacts://host:5000/0/models/{MODEL}/artifacts",
            _store(f"0/models/{MODEL}/artifacts"),
        ),
        ("models://other-registry/victim/2", None),
        (f"runs:/{RUN_ID}/../other", None),
        (f"mlflow-artifacts:/0/{RUN_ID}/artifacts/%2E%2E", None),
        (f"file:///srv/mlruns/3/models/{MODEL}/artifacts", None),
        (f"/srv/mlruns/0/{RUN_ID}/artifacts/model", None),
        (f"http://127.0.0.1:8080/api/2.0/mlflow-artifacts/artifacts/0/{RUN_ID}/artifacts", None),
        ("s3://bucket/some/model", None),
        ("models:/", None),
    ],
)
def test_source_references(source: str, expected: object) -> None:
    assert source_reference(source) == expected


def test_locations_contain_and_overlap() -> None:
    model_dir = ArtifactLocation(RUN, RUN_ID, "model")
    assert model_dir.contains(ArtifactLocation(RUN, RUN_ID, "model/MLmodel"))
    assert model_dir.contains(ArtifactLocation(RUN, RUN_ID, "model"))
    assert not model_dir.contains(ArtifactLocation(RUN, RUN_ID, "model2/MLmodel"))
    assert not model_dir.contains(ArtifactLocation(RUN, RUN_ID, ""))  # the parent
    assert model_dir.overlaps(ArtifactLocation(RUN, RUN_ID, ""))  # deleting the parent
    assert not model_dir.overlaps(ArtifactLocation(RUN, RUN_ID, "model2"))
    assert not model_dir.contains(ArtifactLocation(LOGGED_MODEL, RUN_ID, "model"))
    assert ArtifactLocation(LOGGED_MODEL, MODEL, "").contains(
        ArtifactLocation(LOGGED_MODEL, MODEL, "a/b")
    )


@pytest.mark.parametrize(
    "path",
    [
        "/api/2.0/mlflow-artifacts/artifacts/0/x",
        "/ajax-api/2.0/mlflow-artifacts/mpu/abort/0/x",
        "/get-artifact",
        "/api/2.0/mlflow/artifacts/list",
        f"/ajax-api/2.0/mlflow/logged-models/{MODEL}/artifacts/directories",
    ],
)
def test_artifact_routes_are_classified(path: str) -> None:
    assert classify("GET", path).access is Access.ARTIFACT
