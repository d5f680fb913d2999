"""Data files the CLI reads and writes (``regserve score``'s input and output, the rows of
``regserve inference-table``): .csv, .parquet (.pq) or .jsonl (.ndjson), by their suffix."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from regserve.cli.remote import EXIT_USAGE, fail

if TYPE_CHECKING:  # pandas is imported when a file is read: other commands start faster
    import pandas as pd

__all__ = ["file_format", "read_frame", "write_frame"]

_FORMATS = ("csv", "parquet", "jsonl")


def file_format(path: Path) -> str:
    """csv, parquet or jsonl, from ``path``'s suffix; exits (usage) on any other."""
    suffix = path.suffix.lower().lstrip(".")
    suffix = {"pq": "parquet", "ndjson": "jsonl"}.get(suffix, suffix)
    if suffix not in _FORMATS:
        fail(f"'{path}': use a .csv, .parquet or .jsonl file", EXIT_USAGE)
    return suffix


def read_frame(path: Path) -> pd.DataFrame:
    import pandas as pd

    fmt = file_format(path)
    if fmt == "csv":
        return pd.read_csv(path)
    if fmt == "parquet":
        return pd.read_parquet(path)
    return pd.read_json(path, lines=True)


def write_frame(frame: pd.DataFrame, path: Path) -> None:
    fmt = file_format(path)
    if fmt == "csv":
        frame.to_csv(path, index=False)
    elif fmt == "parquet":
        frame.to_parquet(path, index=False)
    else:
        frame.to_json(path, orient="records", lines=True, date_format="iso")
