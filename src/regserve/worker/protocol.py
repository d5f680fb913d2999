"""MLflow's scoring protocol (``mlflow models serve``'s ``/invocations``), split in three steps.

``parse`` turns a raw body and content type into a :class:`ParsedRequest`, ``predict`` runs the
model on it and ``serialize`` turns the predictions into the response body; ``handle`` composes
them and turns every failure into a JSON error ``{"error_code", "message"}``. The steps are
separate so that a batching layer can parse requests one by one, predict them together and
serialize each answer.

Status, ``error_code``, message and predictions are those of MLflow's own scoring server, with
these deliberate differences (MLflow answers them badly):

- 415s are JSON errors with ``error_code`` ``UNSUPPORTED_MEDIA_TYPE`` and MLflow's exact text
  as ``message`` (MLflow sends that text as text/plain);
- a request without a Content-Type gets a 415 naming the accepted types (MLflow: a 500);
- a JSON body that is a JSON string holding a JSON object (what ``requests``' ``json=
  json.dumps(data)`` sends) is read as that object (MLflow: a 400);
- an unexpected exception is a JSON 400 (while parsing) or 500 (otherwise), never a crash; and
  ``stack_trace`` stays out of responses (it goes to the log);
- an input over the worker's limits (columns, rows, values, JSON depth: :mod:`.limits`) is a
  400 before pandas sees it;
- a message never quotes more than a bounded excerpt of the input (:mod:`.text`): MLflow's
  wording is kept, the quote is cut and says so.
"""

from __future__ import annotations

import inspect
import io
import json
import logging
import re
import traceback
from typing import Any, NamedTuple

import numpy as np

from regserve.worker import compat, wire
from regserve.worker.limits import InputLimits
from regserve.worker.text import EXCERPT_CHARS, bounded_message, excerpt

try:  # orjson is fast but optional: a model's environment may not have it.
    import orjson
except ImportError:  # pragma: no cover - exercised only in environments without orjson
    orjson = None  # type: ignore[assignment]

__all__ = [
    "DEFAULT_LIMITS",
    "JSON_CONTENT_TYPE",
    "ParsedRequest",
    "ScoringError",
    "canonical_json",
    "check_content_type",
    "decode_json",
    "error_response",
    "failure",
    "handle",
    "parse",
    "predict",
    "serialize",
]

JSON_CONTENT_TYPE = "application/json"
UNSUPPORTED_MEDIA_TYPE = "UNSUPPORTED_MEDIA_TYPE"
DEFAULT_LIMITS = InputLimits()

_logger = logging.getLogger("regserve.worker")

# orjson reads integers beyond 64 bits as floats where the standard library keeps them exact;
# a body holding such a long run of digits goes through the standard library instead.
_LONG_NUMBER = re.compile(rb"\d{19}")


class ScoringError(Exception):
    """An error the protocol answers itself, with an HTTP status and an ``error_code``."""

    def __init__(self, status: int, error_code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.error_code = error_code
        self.message = message


class ParsedRequest(NamedTuple):
    """A request ready for ``model.predict``: input data, params and the answer's shape."""

    data: Any
    params: dict[str, Any] | None
    unwrapped: bool  # unified LLM input: the answer has no {"predictions": ...} wrapper


def handle(
    body: bytes,
    content_type: str | None,
    model: Any,
    input_schema: Any = None,
    limits: InputLimits = DEFAULT_LIMITS,
) -> wire.Response:
    """Answer one scoring request exactly as MLflow's scoring server would (see module doc)."""
    try:
        parsed = parse(body, content_type, model, input_schema, limits)
    except Exception as e:
        return failure(e, during="parse")
    try:
        predictions = predict(model, parsed)
        return wire.Response(200, JSON_CONTENT_TYPE, serialize(predictions, parsed.unwrapped))
    except Exception as e:
        return failure(e, during="predict")


def parse(
    body: bytes,
    content_type: str | None,
    model: Any,
    input_schema: Any,
    limits: InputLimits = DEFAULT_LIMITS,
) -> ParsedRequest:
    """Parse a body per its content type; raises ScoringError or MLflow's MlflowException."""
    mime_type = check_content_type(content_type)
    if mime_type == compat.CONTENT_TYPE_JSON:
        data, params, unwrapped = compat.parse_json_data(
            decode_json(body, limits), model.metadata, input_schema
        )
        return ParsedRequest(data, params, unwrapped)
    if mime_type == compat.CONTENT_TYPE_CSV:
        check_limit(limits.csv_problem(body))
        return ParsedRequest(_parse_csv(body, input_schema), None, False)
    if mime_type == compat.CONTENT_TYPE_PARQUET:
        check_limit(limits.parquet_problem(body))
        frame = compat.parse_parquet_input(io.BytesIO(body))
        check_limit(limits.frame_problem(len(frame), len(frame.columns), "Parquet input"))
        return ParsedRequest(frame, None, False)
    raise ScoringError(
        415,
        UNSUPPORTED_MEDIA_TYPE,
        "This predictor only supports the following content types:"
        f" Types: {compat.CONTENT_TYPES}. Got '{excerpt(content_type or '')}'.",
    )


def check_limit(problem: str | None) -> None:
    """Refuse an input over the worker's limits (``problem`` from :class:`InputLimits`)."""
    if problem is not None:
        raise ScoringError(400, "BAD_REQUEST", problem)


def predict(model: Any, parsed: ParsedRequest) -> Any:
    """Run the model as MLflow's ``invocations`` does, wrapping its errors the same way."""
    try:
        if "params" in inspect.signature(model.predict).parameters:
            return model.predict(parsed.data, params=parsed.params)
        if parsed.params:
            # MLflow logs the params themselves here; they are request content, so we do not.
            _logger.warning("the model's predict takes no params: the request's are ignored")
        return model.predict(parsed.data)
    except compat.MlflowException as e:
        e.message = f"Failed to predict data '{excerpt(str(parsed.data))}'. \nError: {e.message}"
        raise
    except Exception as e:
        raise compat.MlflowException(
            message=(
                "Encountered an unexpected error while evaluating the model. Verify"
                " that the serialized input Dataframe is compatible with the model for"
                " inference."
            ),
            error_code=compat.BAD_REQUEST,
            stack_trace=traceback.format_exc(),
        ) from e


def serialize(predictions: Any, unwrapped: bool = False) -> bytes:
    """Predictions as MLflow's ``predictions_to_json`` writes them (DataFrames as records)."""
    if not unwrapped and orjson is not None and _orjson_safe(predictions):
        return orjson.dumps({"predictions": predictions}, option=orjson.OPT_SERIALIZE_NUMPY)
    output = io.StringIO()
    if unwrapped:
        compat.unwrapped_predictions_to_json(predictions, output)
    else:
        compat.predictions_to_json(predictions, output)
    return output.getvalue().encode("utf-8")


def error_response(status: int, error_code: str, message: str, **extra: Any) -> wire.Response:
    """The JSON error body regserve answers everywhere: ``{"error_code", "message"}``."""
    body = json.dumps({"error_code": error_code, "message": message, **extra})
    return wire.Response(status, JSON_CONTENT_TYPE, body.encode("utf-8"))


def check_content_type(content_type: str | None) -> str:
    """MLflow's content-type rules; returns the mime type or raises a 415 ScoringError."""
    if content_type is None:
        raise ScoringError(
            415,
            UNSUPPORTED_MEDIA_TYPE,
            "Missing Content-Type header. This predictor only supports the following"
            f" content types: {compat.CONTENT_TYPES}.",
        )
    type_parts = [part.strip() for part in content_type.split(";")]
    parameters = {key: value for key, _, value in (p.partition("=") for p in type_parts[1:])}
    if parameters.get("charset", "utf-8").lower() != "utf-8":
        raise ScoringError(415, UNSUPPORTED_MEDIA_TYPE, "The scoring server only supports UTF-8")
    if unexpected := set(parameters).difference({"charset"}):
        raise ScoringError(
            415,
            UNSUPPORTED_MEDIA_TYPE,
            f"Unrecognized content type parameters: {', '.join(unexpected)}. "
            f"{compat.SCORING_PROTOCOL_CHANGE_INFO}",
        )
    return type_parts[0]


def decode_json(body: bytes, limits: InputLimits = DEFAULT_LIMITS) -> Any:
    """The JSON object in the body, or the body itself for MLflow to reject in its own words;
    a ScoringError when the object is over ``limits``.

    A JSON string that holds a JSON object (a double-encoded body) is read as that object.
    """
    try:
        decoded = _loads(body)
    except ValueError as error:
        if len(body) > EXCERPT_CHARS:
            raise _not_json(error, body) from None
        return body
    except RecursionError:
        return body
    read = body
    if isinstance(decoded, str):
        read = decoded.encode("utf-8", "surrogatepass")
        try:
            decoded = _loads(read)
        except (ValueError, RecursionError):
            return body
    if not isinstance(decoded, dict):
        return body
    check_limit(limits.json_problem(read, decoded))
    return decoded


def canonical_json(value: Any) -> str:
    """One spelling per JSON value (sorted keys), to compare request params."""
    return json.dumps(value, sort_keys=True, default=repr)


def _loads(body: bytes) -> Any:
    if orjson is not None and not _LONG_NUMBER.search(body):
        try:
            return orjson.loads(body)
        except orjson.JSONDecodeError:
            pass  # the standard library accepts more (NaN, UTF-16, ...), as MLflow does
    return json.loads(body)


def _not_json(error: ValueError, body: bytes) -> Exception:
    """MLflow's answer to a body that is not JSON (``_decode_json_input``), written here for a
    large body: MLflow quotes the whole body in it, twice (a 16 MB body became a 112 MB
    message, built in memory before it could be cut)."""
    return compat.MlflowInvalidInputException(
        "Ensure that input is a valid JSON formatted string. "
        f"Error: '{_error_repr(error)}'\nInput: \n{excerpt(repr(body[:EXCERPT_CHARS]))}\n"
    )


def _error_repr(error: ValueError) -> str:
    """``repr(error)``, bounded: a UnicodeDecodeError's repr holds the whole input."""
    if not isinstance(error, UnicodeDecodeError) or len(error.object) <= EXCERPT_CHARS:
        return repr(error)
    quoted = excerpt(repr(error.object[:EXCERPT_CHARS]))
    return (
        f"UnicodeDecodeError({error.encoding!r}, {quoted}, {error.start}, {error.end}, "
        f"{error.reason!r})"
    )


def _parse_csv(body: bytes, input_schema: Any) -> Any:
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as ex:
        message = f"Ensure that input is a valid UTF-8 encoded string. Error: '{_error_repr(ex)}'"
        raise compat.MlflowInvalidInputException(message) from ex
    return compat.parse_csv_input(csv_input=io.StringIO(text), schema=input_schema)


def _orjson_safe(predictions: Any) -> bool:
    """Whether orjson writes these predictions with exactly the values MLflow's encoder writes.

    Only C-contiguous integer, boolean and finite float64 arrays: orjson writes NaN as null
    and float32 with float32's shortest repr, where MLflow writes NaN and float64 digits.
    """
    if not isinstance(predictions, np.ndarray) or not predictions.flags.c_contiguous:
        return False
    dtype: np.dtype[Any] = predictions.dtype
    if dtype.kind in "biu":
        return dtype.isnative
    return dtype == np.float64 and bool(np.isfinite(predictions).all())


def failure(error: Exception, during: str) -> wire.Response:
    """One error, one JSON response; tracebacks go to the log, never to the client."""
    if isinstance(error, ScoringError):
        return error_response(error.status, error.error_code, error.message)
    if isinstance(error, compat.MlflowException):
        mlflow_error: Any = error  # MLflow's methods are untyped
        # MLflow's messages may quote the whole input (a 16 MB body, 7 times over once escaped).
        mlflow_error.message = bounded_message(str(mlflow_error.message))
        payload = json.loads(mlflow_error.serialize_as_json())
        stack_trace = payload.pop("stack_trace", None)
        status = int(mlflow_error.get_http_status_code())
        # The message may quote the request, so only its code is logged.
        _logger.info("request failed during %s: %s %s", during, status, payload["error_code"])
        if stack_trace:
            _logger.debug("stack trace:\n%s", stack_trace)
        # MLflow's extra fields (sqlstate, error_class) stay, as MLflow sends them.
        return error_response(status, **payload)
    _logger.error("unexpected error during %s", during, exc_info=error)
    if during == "parse":
        return error_response(
            400,
            "BAD_REQUEST",
            f"Failed to parse the request: {type(error).__name__}: {excerpt(str(error))}",
        )
    return error_response(500, "INTERNAL_ERROR", f"{type(error).__name__}: {excerpt(str(error))}")
