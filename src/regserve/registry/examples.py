"""A model version's logged input example, as a scoring request body.

MLflow writes ``saved_input_example_info`` into the MLmodel file: since 2.18 it names a
``serving_input_path`` holding the example already shaped as a request
(``{"dataframe_split": ...}``, ``{"inputs": ...}``); older models have only the raw example
(``artifact_path``), which is wrapped here the way MLflow's scoring server reads it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import yaml

from regserve.errors import InvalidParameterError

__all__ = ["MAX_EXAMPLE_BYTES", "example_files", "read_example", "serving_payload"]

MAX_EXAMPLE_BYTES = 1024 * 1024
"""Larger examples are not offered: the page is for trying a model, not for bulk input."""


def example_files(mlmodel_text: str) -> tuple[str, str | None]:
    """(the file to read, the pandas orient of a raw example) named by an MLmodel; ("", None)
    when the version was logged without an input example."""
    info = (yaml.safe_load(mlmodel_text) or {}).get("saved_input_example_info") or {}
    if info.get("serving_input_path"):
        return _inside(str(info["serving_input_path"])), None
    if info.get("artifact_path"):
        orient = (
            str(info.get("pandas_orient") or "split") if info.get("type") == "dataframe" else ""
        )
        return _inside(str(info["artifact_path"])), orient
    return "", None


def _inside(path: str) -> str:
    # The MLmodel is user data: it may only point at a file of the model itself.
    if path.startswith("/") or ".." in path.split("/"):
        raise InvalidParameterError(f"The MLmodel names an input example outside the model: {path}")
    return path


def serving_payload(text: bytes, raw_orient: str | None) -> Any:
    """The request body for an example file's contents (``raw_orient`` from example_files)."""
    if len(text) > MAX_EXAMPLE_BYTES:
        raise InvalidParameterError(
            f"The input example is larger than {MAX_EXAMPLE_BYTES // 1024} KiB; "
            "download it from the version's artifacts instead."
        )
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise InvalidParameterError(f"The logged input example is not valid JSON: {exc}") from exc
    if raw_orient is None:
        return data
    if raw_orient == "split":
        return {"dataframe_split": data}
    if raw_orient == "records":
        return {"dataframe_records": data}
    return {"inputs": data}


def read_example(read: Callable[[str], bytes], mlmodel_text: str) -> Any | None:
    """The payload of the example an MLmodel names, read through ``read(relative_path)``."""
    path, orient = example_files(mlmodel_text)
    if not path:
        return None
    return serving_payload(read(path), orient)
