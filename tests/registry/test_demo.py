from __future__ import annotations

from pathlib import Path

import yaml

from regserve.registry.demo import DEMO_MODEL_NAME, ensure_demo_model, looks_complete
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
