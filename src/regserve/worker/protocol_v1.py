"""The MLflow 1.x scoring protocol, for models whose environment holds MLflow 1.x.

Databricks serves models that pin ``mlflow<2`` with the 1.x request format; so does regserve.
This mirrors MLflow 1.x's own scoring server (``transformation`` in its
``mlflow/pyfunc/scoring_server``) and calls that release's own parsing functions:

- ``application/json`` with no ``format``: the shape is inferred (a list of records, a
  split-oriented object with ``columns`` and ``data``, or ``instances`` / ``inputs``);
- ``application/json; format=pandas-split`` and ``format=pandas-records``;
- ``application/json-numpy-split`` (MLflow 1.x's ``CONTENT_TYPE_JSON_SPLIT_NUMPY``);
- ``text/csv``.

Answers are 1.x's: a bare JSON list of predictions, no ``{"predictions": ...}`` wrapper.
As in the 2.x protocol module, errors are always JSON and never carry a stack trace, inputs
over the worker's limits are refused (:mod:`.limits`) and messages quote a bounded excerpt.
"""

from __future__ import annotations

import importlib
import io
import json
import logging
import traceback
from typing import Any

from regserve.worker import wire
from regserve.worker.limits import InputLimits
from regserve.worker.text import bounded_message, excerpt, log_safe

__all__ = ["handle", "is_mlflow_1"]

_logger = logging.getLogger("regserve.worker")


def is_mlflow_1() -> bool:
    return str(importlib.import_module("mlflow").__version__).startswith("1.")


def _json(status: int, error_code: str, message: str) -> wire.Response:
    body = json.dumps({"error_code": error_code, "message": message}).encode()
    return wire.Response(status, "application/json", body)


def handle(
    body: bytes,
    content_type: str | None,
    model: Any,
    input_schema: Any,
    limits: InputLimits | None = None,
) -> wire.Response:
    """Answer one request exactly as MLflow 1.x's scoring server would (never raises)."""
    exceptions: Any = importlib.import_module("mlflow.exceptions")
    problem = _limit_problem(body, content_type, limits or InputLimits())
    if problem is not None:
        return _json(400, "BAD_REQUEST", problem)
    try:
        return _handle(body, content_type, model, input_schema)
    except exceptions.MlflowException as e:
        e.message = bounded_message(str(e.message))  # it may quote the whole input
        payload = json.loads(e.serialize_as_json())
        payload.pop("stack_trace", None)
        return wire.Response(
            e.get_http_status_code(), "application/json", json.dumps(payload).encode()
        )
    except Exception as e:  # a bug of ours or the model's: answer, log, keep serving
        _logger.error("unexpected error while scoring: %s\n%s", log_safe(e), traceback.format_exc())
        return _json(500, "INTERNAL_ERROR", f"Unexpected error while scoring: {type(e).__name__}")


def _handle(body: bytes, content_type: str | None, model: Any, input_schema: Any) -> wire.Response:
    # Typed as Any: this is MLflow 1.x's module, whose names the installed stubs do not know.
    s: Any = importlib.import_module("mlflow.pyfunc.scoring_server")

    if not content_type:
        return _json(
            415, "UNSUPPORTED_MEDIA_TYPE", f"Send a Content-Type header: one of {s.CONTENT_TYPES}."
        )
    parts = [p.strip() for p in content_type.split(";")]
    mime_type, params = parts[0], dict(p.partition("=")[::2] for p in parts[1:])
    if params.get("charset", "utf-8").lower() != "utf-8":
        return _json(415, "UNSUPPORTED_MEDIA_TYPE", "The scoring server only supports UTF-8")
    content_format = params.get("format")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as ex:
        quoted = excerpt(repr(ex))  # the error's repr holds the whole body
        return _json(400, "BAD_REQUEST", f"Ensure that input is valid UTF-8. Error: '{quoted}'")
    if mime_type == s.CONTENT_TYPE_CSV and not content_format:
        data = s.parse_csv_input(csv_input=io.StringIO(text), schema=input_schema)
    elif mime_type == s.CONTENT_TYPE_JSON and not content_format:
        data = s.infer_and_parse_json_input(text, input_schema)
    elif mime_type == s.CONTENT_TYPE_JSON and content_format in ("pandas-split", "pandas-records"):
        orient = content_format.split("-")[1]
        data = s.parse_json_input(json_input=io.StringIO(text), orient=orient, schema=input_schema)
    elif mime_type == getattr(s, "CONTENT_TYPE_JSON_SPLIT_NUMPY", None) and not content_format:
        data = s.parse_split_oriented_json_input_to_numpy(text)
    else:
        return _json(
            415,
            "UNSUPPORTED_MEDIA_TYPE",
            (
                "This predictor only supports the following content types and formats:"
                f" Types: {s.CONTENT_TYPES}; Formats: {s.FORMATS}. Got '{excerpt(content_type)}'."
            ),
        )
    try:
        raw_predictions = model.predict(data)
    except s.MlflowException as e:
        return _json(400, "BAD_REQUEST", bounded_message(str(e.message)))
    except Exception:
        _logger.info("model.predict failed:\n%s", traceback.format_exc())
        return _json(
            400,
            "BAD_REQUEST",
            (
                "Encountered an unexpected error while evaluating the model. Verify that the "
                "serialized input Dataframe is compatible with the model for inference."
            ),
        )
    out = io.StringIO()
    s.predictions_to_json(raw_predictions, out)
    return wire.Response(200, "application/json", out.getvalue().encode())


def _limit_problem(body: bytes, content_type: str | None, limits: InputLimits) -> str | None:
    """What makes this input too large to parse (:mod:`.limits`), or None."""
    mime_type = (content_type or "").split(";")[0].strip().lower()
    if mime_type == "text/csv":
        return limits.csv_problem(body)
    if not mime_type.startswith("application/json"):
        return None
    try:
        decoded = json.loads(body)
    except (ValueError, RecursionError):
        return None  # MLflow rejects it in its own words
    return limits.json_problem(body, decoded)
