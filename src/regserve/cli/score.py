"""``regserve score MODEL_URL INPUT OUTPUT``: batch scoring of a csv, parquet or jsonl file.

``-o/--output`` is the format of what the command prints (``table``: a summary line on
stderr; ``json``: a summary object on stdout), as in every other command. It named the
output file here before; ``-o FILE`` still works, with a note saying how to write it now.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional
from urllib.parse import unquote, urlsplit

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from regserve.cli.files import file_format, read_frame, write_frame
from regserve.cli.remote import (
    EXIT_USAGE,
    FORMATS,
    HostOption,
    ProfileOption,
    Remote,
    TokenOption,
    fail,
)
from regserve.client import RetryPolicy
from regserve.client.api import DEFAULT_MAX_PAYLOAD_BYTES

if TYPE_CHECKING:  # pandas is imported when a file is read: other commands start faster
    pass

__all__ = ["parse_model_url", "score"]

_URL_PATH = re.compile(r"^/model/(?P<name>[^/]+)/(?P<ref>[^/]+)(?:/invocations)?/?$")


def parse_model_url(model_url: str) -> tuple[str | None, str, str]:
    """(host or None, model, ref) from a scoring URL, ``models:/name/ref`` or ``name[/ref]``."""
    if "://" in model_url:
        parts = urlsplit(model_url)
        match = _URL_PATH.match(parts.path)
        if not match:
            fail(f"'{model_url}' is not a scoring URL (.../model/NAME/REF/invocations)", EXIT_USAGE)
        return f"{parts.scheme}://{parts.netloc}", unquote(match["name"]), unquote(match["ref"])
    rest = model_url.removeprefix("models:/")
    if "@" in rest and "/" not in rest:
        name, alias = rest.split("@", 1)
        return None, name, alias
    name, _, ref = rest.partition("/")
    if not name or "/" in ref:
        fail(f"'{model_url}' names no model: use NAME, NAME/REF or a scoring URL", EXIT_USAGE)
    return None, name, ref or "latest"


class _RowsPerSecond(ProgressColumn):
    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text(f"{speed:,.0f} rows/s" if speed else "- rows/s", style="progress.data.speed")


def score(
    model_url: Annotated[
        str,
        typer.Argument(
            metavar="MODEL_URL",
            help="http://host/model/NAME/REF/invocations, models:/NAME/REF, NAME/REF or NAME "
            "(REF: version, stage, alias or latest; default latest).",
        ),
    ],
    input_path: Annotated[
        Path,
        typer.Argument(
            metavar="INPUT", exists=True, dir_okay=False, help="Rows: .csv, .parquet or .jsonl."
        ),
    ],
    output_path: Annotated[
        Optional[Path],  # noqa: UP045 - typer reads the annotation at runtime
        typer.Argument(
            metavar="OUTPUT",
            show_default=False,
            help="Where to write the input joined with its predictions: .csv, .parquet or .jsonl.",
        ),
    ] = None,
    output: Annotated[
        str,
        typer.Option(
            "--output",
            "-o",
            help="What to print: table (a summary line, for people) or json (a summary for "
            "scripts). A file name here is read as OUTPUT, as before (deprecated).",
        ),
    ] = "table",
    batch_size: Annotated[int, typer.Option(min=1, help="Rows per request (at most).")] = 256,
    concurrency: Annotated[int, typer.Option(min=1, help="Requests in flight at once.")] = 4,
    max_payload_bytes: Annotated[
        int, typer.Option(min=1, help="Split requests to stay under this many bytes.")
    ] = DEFAULT_MAX_PAYLOAD_BYTES,
    host: HostOption = None,
    token: TokenOption = None,
    profile: ProfileOption = None,
) -> None:
    """Score every row of INPUT and write it, with its predictions, to OUTPUT, in order.

    Example: regserve score iris-classifier/Production rows.csv scored.parquet
    """
    output_path, output = _output_of(output_path, output)
    url_host, model, ref = parse_model_url(model_url)
    file_format(output_path)
    frame = read_frame(input_path)
    client = Remote(url_host or host, token, profile).client
    console = Console(stderr=True)
    started = time.monotonic()
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        _RowsPerSecond(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    retries: list[int] = []
    policy = RetryPolicy(on_retry=lambda status, _seconds: retries.append(status))
    with Progress(*columns, console=console) as progress:
        task = progress.add_task(f"{model}/{ref}", total=len(frame))
        predictions = client.score(
            frame,
            model,
            ref,
            batch_size=batch_size,
            concurrency=concurrency,
            max_payload_bytes=max_payload_bytes,
            retry=policy,
            on_progress=lambda rows: progress.advance(task, rows),
        )
    write_frame(frame.join(predictions, rsuffix="_prediction"), output_path)
    seconds = time.monotonic() - started
    rate = len(frame) / seconds if seconds > 0 else 0.0
    retried = f", {len(retries)} requests retried (503/429)" if retries else ""
    console.print(
        f"Scored {len(frame):,} rows in {seconds:.1f} s ({rate:,.0f} rows/s{retried}) "
        f"-> {output_path}"
    )
    if output == "json":
        summary = {
            "model": model,
            "ref": ref,
            "rows": len(frame),
            "seconds": round(seconds, 3),
            "retried_requests": len(retries),
            "output_path": str(output_path),
        }
        typer.echo(json.dumps(summary, indent=2))


def _output_of(output_path: Path | None, output: str) -> tuple[Path, str]:
    """(the file to write, the format to print), from OUTPUT and ``-o``; ``-o FILE`` (the
    old spelling) names the file, with a note on stderr."""
    if output not in FORMATS:
        if output_path is not None:
            fail(f"-o/--output is table or json, not '{output}'", EXIT_USAGE)
        typer.echo(
            f"Note: -o/--output now names what to print (table or json), as in every other "
            f"command; give the file as the third argument: regserve score MODEL INPUT {output}",
            err=True,
        )
        return Path(output), "table"
    if output_path is None:
        fail("name the file to write: regserve score MODEL_URL INPUT OUTPUT", EXIT_USAGE)
    return output_path, output
