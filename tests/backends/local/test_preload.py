"""What a model's warm process imports, read from its MLmodel file."""

from __future__ import annotations

from pathlib import Path

from regserve.backends.local.preload import BASE_MODULES, preload_modules


def _mlmodel(path: Path, text: str) -> Path:
    path.mkdir()
    (path / "MLmodel").write_text(text)
    return path


def test_a_flavor_adds_its_library_and_the_pyfunc_loader(tmp_path: Path) -> None:
    model = _mlmodel(
        tmp_path / "m",
        """
flavors:
  python_function:
    loader_module: mlflow.sklearn
    python_version: 3.11.7
  sklearn:
    pickled_model: model.pkl
    sklearn_version: 1.5.0
""",
    )
    assert preload_modules(model) == [*BASE_MODULES, "mlflow.sklearn", "sklearn"]


def test_unknown_flavors_and_odd_names_add_nothing(tmp_path: Path) -> None:
    model = _mlmodel(
        tmp_path / "m",
        """
flavors:
  python_function: {loader_module: "os; rm -rf /"}
  my_flavor: {}
""",
    )
    assert preload_modules(model) == list(BASE_MODULES)


def test_an_unreadable_mlmodel_gives_the_base_modules(tmp_path: Path) -> None:
    assert preload_modules(tmp_path / "missing") == list(BASE_MODULES)
    assert preload_modules(_mlmodel(tmp_path / "bad", "flavors: [unclosed")) == list(BASE_MODULES)
    assert preload_modules(_mlmodel(tmp_path / "list", "- a\n- b\n")) == list(BASE_MODULES)


def test_a_serialization_format_adds_the_library_that_reads_the_model_file(
    tmp_path: Path,
) -> None:
    model = _mlmodel(
        tmp_path / "m",
        """
flavors:
  python_function: {loader_module: mlflow.sklearn}
  sklearn: {pickled_model: model.skops, serialization_format: skops}
  my_flavor: {serialization_format: skops}
""",
    )
    assert preload_modules(model) == [*BASE_MODULES, "mlflow.sklearn", "sklearn", "skops.io"]
