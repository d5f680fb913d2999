"""The pieces of MLflow's own scoring server that the protocol reuses, across MLflow 2.x and 3.x.

MLflow's ``mlflow.pyfunc.scoring_server`` is the specification of the scoring protocol, so the
worker calls its functions rather than re-writing them. A few of them appeared during 2.x; for
those this module carries a faithful fallback, used only when the model's environment holds an
MLflow that lacks the original.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable
from typing import IO, Any, cast

from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import BAD_REQUEST
from mlflow.utils.proto_json_utils import NumpyEncoder

_json_utils: Any = importlib.import_module("mlflow.utils.proto_json_utils")
# Absent from MLflow 1.x, whose requests protocol_v1 answers (unbatched); keep this module
# importable there.
MlflowInvalidInputException: type[MlflowException] = getattr(
    _json_utils, "MlflowInvalidInputException", MlflowException
)
_dataframe_from_parsed_json: Any = getattr(_json_utils, "dataframe_from_parsed_json", None)

# Typed as Any: its names differ across MLflow versions, so each use below is guarded.
_server: Any = importlib.import_module("mlflow.pyfunc.scoring_server")

__all__ = [
    "BAD_REQUEST",
    "CONTENT_TYPES",
    "CONTENT_TYPE_CSV",
    "CONTENT_TYPE_JSON",
    "CONTENT_TYPE_PARQUET",
    "SCORING_PROTOCOL_CHANGE_INFO",
    "MlflowException",
    "MlflowInvalidInputException",
    "dataframe_from_parsed_json",
    "get_jsonable_obj",
    "parse_csv_input",
    "parse_json_data",
    "parse_parquet_input",
    "predictions_to_json",
    "unwrapped_predictions_to_json",
]

CONTENT_TYPE_CSV: str = getattr(_server, "CONTENT_TYPE_CSV", "text/csv")
CONTENT_TYPE_JSON: str = getattr(_server, "CONTENT_TYPE_JSON", "application/json")
CONTENT_TYPE_PARQUET: str = getattr(
    _server, "CONTENT_TYPE_PARQUET", "application/vnd.apache.parquet"
)
CONTENT_TYPES: list[str] = list(
    getattr(_server, "CONTENT_TYPES", [CONTENT_TYPE_CSV, CONTENT_TYPE_JSON, CONTENT_TYPE_PARQUET])
)
SCORING_PROTOCOL_CHANGE_INFO: str = getattr(_server, "SCORING_PROTOCOL_CHANGE_INFO", "")

get_jsonable_obj = cast(Callable[..., Any], _server._get_jsonable_obj)
dataframe_from_parsed_json = cast(Callable[..., Any], _dataframe_from_parsed_json)
parse_csv_input = cast(Callable[..., Any], _server.parse_csv_input)
predictions_to_json = cast(Callable[[Any, IO[str]], None], _server.predictions_to_json)


def _parse_parquet_input(parquet_input: IO[bytes]) -> Any:
    """Fallback for MLflow versions before ``parse_parquet_input`` (same message and code)."""
    import pandas as pd

    try:
        return pd.read_parquet(parquet_input)
    except Exception as e:
        raise MlflowException(
            message=(
                "Failed to parse input as a Pandas DataFrame. Ensure that the input is"
                " a valid Parquet Pandas DataFrame produced using the"
                f" `pandas.DataFrame.to_parquet()` method. Error: '{e}'"
            ),
            error_code=BAD_REQUEST,
        ) from e


def _unwrapped_predictions_to_json(raw_predictions: Any, output: IO[str]) -> None:
    """Fallback for MLflow versions before the unified LLM format."""
    json.dump(get_jsonable_obj(raw_predictions, pandas_orient="records"), output, cls=NumpyEncoder)


def _parse_json_data(data: Any, metadata: Any, input_schema: Any) -> tuple[Any, Any, bool]:
    """Fallback for MLflow 2.x before ``_parse_json_data``: the traditional JSON format only."""
    input_dict = _server._decode_json_input(data)
    params = input_dict.pop("params", None)
    formats = {"dataframe_split", "dataframe_records", "instances", "inputs"}
    frame_data = {k: v for k, v in input_dict.items() if k in formats}
    if hasattr(_server, "infer_and_parse_data"):
        return _server.infer_and_parse_data(frame_data, input_schema), params, False
    return _server.infer_and_parse_json_input(input_dict, input_schema), params, False


parse_parquet_input = cast(
    Callable[[IO[bytes]], Any], getattr(_server, "parse_parquet_input", _parse_parquet_input)
)
unwrapped_predictions_to_json = cast(
    Callable[[Any, IO[str]], None],
    getattr(_server, "unwrapped_predictions_to_json", _unwrapped_predictions_to_json),
)


def parse_json_data(data: Any, metadata: Any, input_schema: Any) -> tuple[Any, Any, bool]:
    """MLflow's ``_parse_json_data``: returns (data, params, is_unified_llm_input)."""
    if hasattr(_server, "_parse_json_data"):
        parsed = _server._parse_json_data(data, metadata, input_schema)
        return parsed.data, parsed.params, bool(parsed.is_unified_llm_input)
    return _parse_json_data(data, metadata, input_schema)
