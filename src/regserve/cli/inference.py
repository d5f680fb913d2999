"""``regserve inference-table MODEL [OUTPUT]``: the newest captured requests of a model."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from regserve.cli.files import file_format, write_frame
from regserve.cli.remote import (
    HostOption,
    ModelArg,
    OutputOption,
    ProfileOption,
    Remote,
    TokenOption,
    emit,
)

__all__ = ["inference_table"]

_COLUMNS = ["time", "request id", "version", "ref", "caller", "status", "ms", "kind"]


def inference_table(
    model: ModelArg,
    output_path: Annotated[
        Optional[Path],  # noqa: UP045 - typer reads the annotation at runtime
        typer.Argument(
            metavar="[OUTPUT]",
            show_default=False,
            help="Write the rows, bodies included, to this .csv, .parquet or .jsonl file "
            "instead of printing them.",
        ),
    ] = None,
    since: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option(help="Only rows from then on: epoch ms or ISO 8601 (2026-12-03T18:00Z)."),
    ] = None,
    limit: Annotated[int, typer.Option(min=1, max=10000, help="Rows at most.")] = 100,
    host: HostOption = None,
    token: TokenOption = None,
    profile: ProfileOption = None,
    output: OutputOption = "table",
) -> None:
    """MODEL's newest captured scoring requests (its inference table), newest first.

    Capture is on per model with the cluster tag regserve.inference_table=on. CAN_MANAGE.
    Example: regserve inference-table fraud --since 2026-12-03 rows.parquet
    """
    if output_path is not None:
        file_format(output_path)  # a bad suffix fails before the request
    data = Remote(host, token, profile).client.inference_table(model, since, limit)
    rows: list[dict[str, Any]] = data["rows"]
    if output_path is None:
        emit(data, output, _COLUMNS, [_shown(row) for row in rows])
        return
    import pandas as pd

    write_frame(pd.DataFrame(rows, columns=list(rows[0]) if rows else None), output_path)
    if output == "json":
        typer.echo(json.dumps({"model": model, "rows": len(rows), "path": str(output_path)}))
    typer.echo(f"Wrote {len(rows)} rows of '{model}' to {output_path}.", err=True)


def _shown(row: dict[str, Any]) -> list[Any]:
    ref = f"{row['ref']} -> {row['route']}" if row["route"] else row["ref"]
    kind = "shadow" if row["shadow"] else ""
    if row["request_truncated"] or row["response_truncated"]:
        kind = f"{kind} truncated".strip()
    status = row["status_code"] if row["status_code"] is not None else "no answer"
    return [
        row["timestamp"],
        row["request_id"],
        row["version"],
        ref,
        row["caller"],
        status,
        row["latency_ms"],
        kind,
    ]
