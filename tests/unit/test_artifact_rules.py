"""Which files an artifact request touches, and which registered sources contain them."""

from __future__ import annotations

import pytest

from regserve.auth.artifact_rules import (
    ArtifactLocation,
    ArtifactTarget,
    artifact_target,
    source_location,
)
from regserve.auth.mlflow_rules import Access, classify
from regserve.errors import InvalidParameterError

RUN = "0123456789abcdef0123456789abcdef"
MODEL = "m-fedcba9876543210fedcba9876543210"


@pytest.mark.parametrize(
    ("method", "path", "query", "expected"),
    [
        ("GET", f"/api/2.0/mlflow-artifacts/artifacts/1/models/{MODEL}/artifacts/MLmodel", {},
         ArtifactTarget(ArtifactLocation("logged_model", MODEL, "MLmodel"), False)),
        ("PUT", f"/ajax-api/2.0/mlflow-artifacts/artifacts/0/{RUN}/artifacts/model/x.pkl", {},
         ArtifactTarget(ArtifactLocation("run", RUN, "model/x.pkl"), True)),
        ("GET", "/api/2.0/mlflow-artifacts/artifacts", {"path": f"0/{RUN}/artifacts/model"},
         ArtifactTarget(ArtifactLocation("run", RUN, "model"), False)),
        ("POST", f"/api/2.0/mlflow-artifacts/mpu/create/team/artifacts/7/{RUN}/artifacts/m", {},
         ArtifactTarget(ArtifactLocation("run", RUN, "m"), True)),
        ("GET", "/get-artifact", {"run_uuid": RUN, "path": "model/MLmodel"},
         ArtifactTarget(ArtifactLocation("run", RUN, "model/MLmodel"), False)),
        ("GET", "/api/2.0/mlflow/artifacts/list", {"run_id": RUN},
         ArtifactTarget(ArtifactLocation("run", RUN, ""), False)),
        ("GET", f"/ajax-api/2.0/mlflow/logged-models/{MODEL}/artifacts/files",
         {"artifact_file_path": "./MLmodel"},
         ArtifactTarget(ArtifactLocation("logged_model", MODEL, "MLmodel"), False)),
        ("GET", "/api/2.0/mlflow-artifacts/artifacts", {"path": "0"}, None),
        ("GET", "/api/2.0/mlflow-artifacts/artifacts/0/notarun/artifacts/x", {}, None),
        ("GET", "/api/2.0/mlflow/artifacts/list", {}, None),
    ],
)  # fmt: skip
def test_artifact_targets(
    method: str, path: str, query: dict[str, str], expected: ArtifactTarget | None
) -> None:
    assert artifact_target(method, path, query) == expected


def test_climbing_paths_are_refused() -> None:
    with pytest.raises(InvalidParameterError, match=r"\.\."):
        artifact_target("GET", f"/api/2.0/mlflow-artifacts/artifacts/0/x/../{RUN}/artifacts", {})
    with pytest.raises(InvalidParameterError):
        artifact_target("GET", "/get-artifact", {"run_uuid": RUN, "path": "../../etc"})


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        (f"models:/{MODEL}", ArtifactLocation("logged_model", MODEL, "")),
        (f"runs:/{RUN}/model", ArtifactLocation("run", RUN, "model")),
        (f"mlflow-artifacts:/0/{RUN}/artifacts/model", ArtifactLocation("run", RUN, "model")),
        (f"file:///srv/mlruns/3/models/{MODEL}/artifacts",
         ArtifactLocation("logged_model", MODEL, "")),
        ("s3://bucket/some/model", None),
        ("models:/iris/3", None),
    ],
)  # fmt: skip
def test_source_locations(source: str, expected: ArtifactLocation | None) -> None:
    assert source_location(source) == expected


def test_a_source_contains_its_files_only() -> None:
    model_dir = ArtifactLocation("run", RUN, "model")
    assert model_dir.contains(ArtifactLocation("run", RUN, "model/MLmodel"))
    assert model_dir.contains(ArtifactLocation("run", RUN, "model"))
    assert not model_dir.contains(ArtifactLocation("run", RUN, "model2/MLmodel"))
    assert not model_dir.contains(ArtifactLocation("run", RUN, ""))  # listing the parent
    assert not model_dir.contains(ArtifactLocation("logged_model", RUN, "model"))
    assert ArtifactLocation("logged_model", MODEL, "").contains(
        ArtifactLocation("logged_model", MODEL, "a/b")
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
