from __future__ import annotations

from pathlib import Path

import yaml

from regserve.registry.demo import DEMO_MODEL_NAME, FLAVORS, ensure_demo_model, looks_complete
from regserve.registry.models import ModelSnapshot, VersionInfo
from tests.registry.conftest import HostedServer


def test_demo_model_is_registered_once(hosted: HostedServer, tmp_path: Path) -> None:
    reader = hosted.registry.reader
    ensure_demo_model(hosted.url, token="unused-by-plain-mlflow")
    ensure_demo_model(hosted.url, token="unused-by-plain-mlflow")

    snap = reader.snapshot(DEMO_MODEL_NAME)
    assert snap is not None
    assert [(v.version, v.stage, v.status) for v in snap.versions] == [
        ("1", "Staging", "READY"),
        ("2", "Production", "READY"),
    ]
    assert snap.aliases == {"champion": "2"}
    assert looks_complete(snap)  # a restart needs no registering process
    requirements = reader.download(DEMO_MODEL_NAME, "1", tmp_path / "v1") / "requirements.txt"
    pinned = [line for line in requirements.read_text().splitlines() if "==" in line]
    assert {line.partition("==")[0] for line in pinned} >= {"mlflow", "scikit-learn"}  # given
    mlmodel = yaml.safe_load(
        (reader.download(DEMO_MODEL_NAME, "2", tmp_path / "v2") / "MLmodel").read_text()
    )
    inputs = yaml.safe_load(mlmodel["signature"]["inputs"])
    assert [col["name"] for col in inputs] == [
        "sepal_length",
        "sepal_width",
        "petal_length",
        "petal_width",
    ]
    assert "saved_input_example_info" in mlmodel
    assert "sklearn" in mlmodel["flavors"]
    # saved with cloudpickle, as the flavors its warm process is started with say
    assert mlmodel["flavors"]["sklearn"]["serialization_format"] == "cloudpickle"
    assert FLAVORS["sklearn"]["serialization_format"] == "cloudpickle"


def _snapshot(stages: list[str], aliases: dict[str, str]) -> ModelSnapshot:
    versions = tuple(
        VersionInfo(DEMO_MODEL_NAME, str(i), stage, "READY", (), "src", None, i)
        for i, stage in enumerate(stages, start=1)
    )
    return ModelSnapshot(DEMO_MODEL_NAME, versions, aliases, "")


def test_the_demo_is_complete_with_versions_added_since_but_not_when_changed() -> None:
    champion = {"champion": "2"}
    assert looks_complete(_snapshot(["Staging", "Production"], champion))
    assert looks_complete(_snapshot(["Staging", "Production", "None"], {**champion, "x": "3"}))
    assert not looks_complete(_snapshot(["Staging", "Archived", "Production"], champion))
    assert not looks_complete(_snapshot(["Staging", "Production"], {"champion": "1"}))
    assert not looks_complete(_snapshot(["Staging"], {}))
    assert not looks_complete(None)
