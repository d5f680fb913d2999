"""Reading a model's logged environment: the files MLflow writes, and the awkward ones."""

from __future__ import annotations

from pathlib import Path

import mlflow
import pytest

from regserve.envs import EnvSpecError, read_env_spec
from regserve.envs.interpreters import find_interpreters, pick_interpreter
from tests.support.models import save_iris_model


def write(d: Path, **files: str) -> Path:
    for name, text in files.items():
        (d / name.replace("_yaml", ".yaml").replace("_txt", ".txt")).write_text(text)
    return d


def test_a_model_saved_by_mlflow(tmp_path: Path) -> None:
    spec = read_env_spec(save_iris_model(tmp_path / "m"), "3.11")
    assert spec.source == "python_env.yaml"
    assert spec.python == "3.11"
    assert f"mlflow=={mlflow.__version__}" in spec.requirements
    assert any(r.startswith("scikit-learn==") for r in spec.requirements)
    assert spec.mlflow_major == int(mlflow.__version__.split(".")[0])
    assert spec.warnings == ()


def test_the_key_ignores_order_and_blank_lines(tmp_path: Path) -> None:
    for d in "abc":
        (tmp_path / d).mkdir()
    a = write(tmp_path / "a", python_env_yaml="python: 3.11.4\n", requirements_txt="b==1\n\na==2\n")
    b = write(tmp_path / "b", python_env_yaml="python: 3.11.9\n", requirements_txt="a==2\nb==1\n")
    assert read_env_spec(a, "3.11").key == read_env_spec(b, "3.11").key
    c = write(tmp_path / "c", python_env_yaml="python: 3.10.1\n", requirements_txt="a==2\nb==1\n")
    assert read_env_spec(c, "3.11").key != read_env_spec(b, "3.11").key


def test_mlflow_is_added_when_missing(tmp_path: Path) -> None:
    spec = read_env_spec(write(tmp_path, requirements_txt="scikit-learn\n"), "3.11")
    assert f"mlflow=={mlflow.__version__}" in spec.requirements


def test_conda_only_with_pip_part_and_defaults_channel(tmp_path: Path) -> None:
    conda = (
        "channels:\n- defaults\ndependencies:\n- python=3.10.4\n- pip\n- numpy=1.26.4\n"
        "- pip:\n  - mlflow==2.9.2\n  - scikit-learn==1.3.2\n"
    )
    spec = read_env_spec(write(tmp_path, conda_yaml=conda), "3.11")
    assert spec.source == "conda.yaml"
    assert spec.python == "3.10"
    assert spec.requirements == ("mlflow==2.9.2", "numpy==1.26.4", "scikit-learn==1.3.2")
    assert spec.mlflow_major == 2
    assert "defaults" in spec.warnings[0]


def test_defaults_channel_warns_even_beside_python_env(tmp_path: Path) -> None:
    model = save_iris_model(tmp_path / "m")
    conda = (model / "conda.yaml").read_text().replace("conda-forge", "defaults")
    (model / "conda.yaml").write_text(conda)
    assert "commercial license" in read_env_spec(model, "3.11").warnings[0]


def test_conda_only_packages_are_named(tmp_path: Path) -> None:
    conda = "dependencies:\n- python=3.11\n- cudatoolkit=11.8\n- mkl\n- pip:\n  - mlflow\n"
    with pytest.raises(EnvSpecError, match=r"cudatoolkit=11.8, mkl"):
        read_env_spec(write(tmp_path, conda_yaml=conda), "3.11")


PINS = [("mlflow<2", 1), ("mlflow==1.30.0", 1), ("mlflow-skinny==2.22.0", 2), ("mlflow<3.0", 2)]


@pytest.mark.parametrize(("line", "major"), PINS)
def test_mlflow_major_from_pins(tmp_path: Path, line: str, major: int) -> None:
    assert (
        read_env_spec(write(tmp_path, requirements_txt=f"{line}\n"), "3.11").mlflow_major == major
    )


@pytest.mark.parametrize(
    ("files", "fragment"),
    [
        ({}, "has no python_env.yaml"),
        ({"conda_yaml": "[1, 2"}, "not valid YAML"),
        ({"python_env_yaml": "python: banana\n", "requirements_txt": "x\n"}, "not a version"),
    ],
)
def test_unreadable_environments(tmp_path: Path, files: dict[str, str], fragment: str) -> None:
    with pytest.raises(EnvSpecError, match=fragment):
        read_env_spec(write(tmp_path, **files), "3.11")


def test_interpreters_on_this_machine() -> None:
    found = find_interpreters()
    assert any(i.label == "3.11" for i in found)  # the one running the tests, at least
    exact, note = pick_interpreter("3.11", allow_nearest=False)
    assert exact is not None
    assert note == ""
    missing, note = pick_interpreter("3.99", allow_nearest=False)
    assert missing is None
    assert "Python 3.99, which is not installed" in note
    nearest, note = pick_interpreter("3.99", allow_nearest=True)
    assert nearest is not None
    assert nearest.version == max(i.version for i in found if i.version[0] == 3)
    assert "using the nearest" in note
