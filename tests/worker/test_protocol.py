"""The scoring protocol in-process, on the real iris model."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import mlflow.pyfunc
import numpy as np
import pandas as pd
import pytest
from mlflow.pyfunc.scoring_server import predictions_to_json

from regserve.worker import protocol
from tests.conformance_cases import COLUMNS, ROWS, SPLIT

JSON = "application/json"


@pytest.fixture(scope="module")
def model(iris_model_dir: Path) -> Any:
    return mlflow.pyfunc.load_model(str(iris_model_dir))


def _handle(model: Any, content_type: str | None, body: bytes) -> tuple[int, dict[str, Any]]:
    response = protocol.handle(body, content_type, model, model.metadata.get_input_schema())
    assert response.content_type == "application/json"
    return response.status, json.loads(response.body)


def _split_body() -> bytes:
    return json.dumps({"dataframe_split": SPLIT}).encode()


def test_parse_json_split_gives_a_frame_and_no_params(model: Any) -> None:
    parsed = protocol.parse(_split_body(), JSON, model, model.metadata.get_input_schema())
    assert isinstance(parsed.data, pd.DataFrame)
    assert list(parsed.data.columns) == COLUMNS
    assert parsed.params is None
    assert parsed.unwrapped is False


def test_parse_keeps_params(model: Any) -> None:
    body = json.dumps({"dataframe_split": SPLIT, "params": {"k": 1}}).encode()
    parsed = protocol.parse(body, JSON, model, None)
    assert parsed.params == {"k": 1}


def test_parse_reads_double_encoded_json(model: Any) -> None:
    body = json.dumps(json.dumps({"dataframe_split": SPLIT})).encode()
    parsed = protocol.parse(body, JSON, model, model.metadata.get_input_schema())
    assert parsed.data.shape == (3, 4)


def test_handle_scores_like_the_model(model: Any) -> None:
    status, body = _handle(model, JSON, _split_body())
    expected = model.predict(pd.DataFrame(ROWS, columns=COLUMNS)).tolist()
    assert (status, body) == (200, {"predictions": expected})


@pytest.mark.parametrize(
    ("content_type", "start"),
    [
        (
            JSON + "; format=pandas-split",
            "Unrecognized content type parameters: format. IMPORTANT:",
        ),
        (JSON + "; charset=latin-1", "The scoring server only supports UTF-8"),
        ("text/plain", "This predictor only supports the following content types:"),
        (None, "Missing Content-Type header."),
    ],
)
def test_content_type_errors_are_json_415(model: Any, content_type: str | None, start: str) -> None:
    with pytest.raises(protocol.ScoringError) as caught:
        protocol.parse(_split_body(), content_type, model, None)
    assert caught.value.status == 415
    status, body = _handle(model, content_type, _split_body())
    assert status == 415
    assert body["error_code"] == "UNSUPPORTED_MEDIA_TYPE"
    assert body["message"].startswith(start)


def test_missing_content_type_names_the_accepted_types(model: Any) -> None:
    _, body = _handle(model, None, _split_body())
    for content_type in ("application/json", "text/csv", "application/vnd.apache.parquet"):
        assert content_type in body["message"]


def test_bad_json_is_bad_request_without_stack_trace(model: Any) -> None:
    status, body = _handle(model, JSON, b"{not json")
    assert status == 400
    assert body["error_code"] == "BAD_REQUEST"
    assert "stack_trace" not in body


def test_schema_failure_is_invalid_parameter_value(model: Any) -> None:
    body = json.dumps({"dataframe_records": [{"sepal_length": 1.0}]}).encode()
    status, answer = _handle(model, JSON, body)
    assert status == 400
    assert answer["error_code"] == "INVALID_PARAMETER_VALUE"
    assert "Failed to enforce schema" in answer["message"]


def test_deeply_nested_json_is_a_clean_400(model: Any) -> None:
    status, body = _handle(model, JSON, b"[" * 100_000 + b"]" * 100_000)
    assert status == 400
    assert body["error_code"] == "BAD_REQUEST"


class _ExplodingModel:
    """A real model object whose predict fails the way buggy user code does."""

    def predict(self, data: Any) -> Any:
        raise RuntimeError("boom")


class _UnserializableModel:
    def predict(self, data: Any) -> Any:
        return object()


def test_model_errors_are_bad_request_like_mlflow() -> None:
    response = protocol.handle(b"a\n1\n", "text/csv", _ExplodingModel(), None)
    body = json.loads(response.body)
    assert response.status == 400
    assert body["error_code"] == "BAD_REQUEST"
    assert body["message"].startswith("Encountered an unexpected error while evaluating")
    assert "boom" not in response.body.decode()  # the traceback is logged, not answered


def test_unserializable_predictions_are_a_500_json_error() -> None:
    response = protocol.handle(b"a\n1\n", "text/csv", _UnserializableModel(), None)
    assert response.status == 500
    assert json.loads(response.body)["error_code"] == "INTERNAL_ERROR"


def _mlflow_json(predictions: Any) -> Any:
    output = io.StringIO()
    predictions_to_json(predictions, output)
    return output.getvalue()


@pytest.mark.parametrize(
    "predictions",
    [
        np.array([0, 2, 1], dtype=np.int64),
        np.array([0, 2, 1], dtype=np.int32),
        np.array([[0.1, 0.2], [1e308, -0.0]]),
        np.array([True, False]),
        np.array([0.1, np.nan]),
        np.array([0.1, np.inf]),
        np.array([0.1, 0.3], dtype=np.float32),
        np.arange(12, dtype=np.float64).reshape(3, 4)[:, 1],
        np.array(["a", "é"]),
        pd.DataFrame({"a": [1, 2], "b": ["x", None]}),
        pd.Series([1.5, 2.5]),
        [1, 2, 3],
        {"k": np.float32(0.5)},
    ],
    ids=lambda p: type(p).__name__ + str(getattr(p, "dtype", "")),
)
def test_serialize_equals_mlflow(predictions: Any) -> None:
    ours = protocol.serialize(predictions).decode()
    theirs = _mlflow_json(predictions)
    # Same values, read back by the same reader (which accepts MLflow's NaN and Infinity).
    assert repr(json.loads(ours)) == repr(json.loads(theirs))


@pytest.mark.parametrize("content_type", [JSON, "text/csv"])
def test_a_large_undecodable_body_is_quoted_cut_in_mlflows_words(
    model: Any, content_type: str
) -> None:
    body = bytes(range(128, 256)) * 40_000  # 5 MB, not UTF-8
    status, answer = _handle(model, content_type, body)
    assert status == 400
    message = answer["message"]
    assert message.startswith("Invalid input. Ensure that input is a valid")
    assert "UnicodeDecodeError('utf-8', b'\\x80\\x81" in message, message
    assert "'invalid start byte')" in message  # the reason is kept
    assert "(cut at 1000 characters)" in message
    assert len(message) < 3000


def test_a_large_body_that_is_not_json_keeps_mlflows_wording(model: Any) -> None:
    body = b"x" * 1_000_000
    status, answer = _handle(model, JSON, body)
    assert status == 400
    assert answer["message"].startswith(
        "Invalid input. Ensure that input is a valid JSON formatted string. Error: "
        "'JSONDecodeError('Expecting value: line 1 column 1 (char 0)')'\nInput: \nb'xxx"
    )
    assert len(answer["message"]) < 1200
