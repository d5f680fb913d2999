"""Compare one scoring answer of regserve with the answer of `mlflow models serve` to the same case.

Used by the worker's conformance test and, later, through the full HTTP gateway: build an
:class:`Answer` from each side (``Answer.from_httpx`` for an HTTP response) and call
:func:`assert_conformant`.
"""

from __future__ import annotations

import json
import re
from typing import Any, NamedTuple

from tests.conformance_cases import Case

__all__ = ["Answer", "assert_conformant", "normalize_message"]

# MLflow prints the set of input fields ({'inputs', 'instances', ...}); a set's order depends
# on the process' string-hash seed, so it differs between two servers answering the same case.
_FIELD_SET = re.compile(r"\{'[a-z_]+'(?:, '[a-z_]+')*\}")
# Object reprs carry memory addresses ("<object at 0x7f...>"), which differ between processes.
_ADDRESS = re.compile(r"0x[0-9a-fA-F]+")


class Answer(NamedTuple):
    status: int
    content_type: str
    body: bytes

    @classmethod
    def from_httpx(cls, response: Any) -> Answer:
        return cls(response.status_code, response.headers.get("content-type", ""), response.content)


def normalize_message(message: str) -> str:
    """Remove from an error message only what varies between two processes (see above)."""
    message = _FIELD_SET.sub(
        lambda m: "{" + ", ".join(sorted(m[0][1:-1].split(", "))) + "}", message
    )
    return _ADDRESS.sub("0x?", message)


def assert_conformant(case: Case, ours: Answer, theirs: Answer) -> None:
    """Assert that regserve answered ``case`` as MLflow does, or as its table says it diverges."""
    assert ours.content_type.startswith("application/json"), ours
    body = json.loads(ours.body)
    if case.diverges is not None:
        assert ours.status == case.diverges, (case.case_id, ours)
        assert ("predictions" in body) == (ours.status == 200), body
        if ours.status != 200:
            assert set(body) >= {"error_code", "message"}, body
        return
    assert ours.status == theirs.status, (case.case_id, ours, theirs)
    if theirs.status == 200:
        assert body == json.loads(theirs.body), case.case_id
        return
    assert "stack_trace" not in body, body
    if theirs.content_type.startswith("application/json"):
        expected = json.loads(theirs.body)
    else:  # MLflow answers 415 as text/plain; regserve as JSON holding the same text
        expected = {"error_code": "UNSUPPORTED_MEDIA_TYPE", "message": theirs.body.decode()}
    assert body["error_code"] == expected["error_code"], (case.case_id, body, expected)
    assert normalize_message(body["message"]) == normalize_message(expected["message"]), (
        case.case_id
    )
