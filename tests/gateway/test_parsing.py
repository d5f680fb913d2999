"""Parsing credentials and scoring paths."""

from __future__ import annotations

import base64

import pytest

from regserve.auth.credentials import token_from_header
from regserve.errors import UnauthenticatedError
from regserve.gateway.scoring import parse_scoring_path


def basic(user: str, password: str) -> bytes:
    return b"Basic " + base64.b64encode(f"{user}:{password}".encode())


def test_bearer_and_basic_token() -> None:
    assert token_from_header(b"Bearer abc") == "abc"
    assert token_from_header(b"bearer   abc ") == "abc"
    assert token_from_header(basic("token", "abc")) == "abc"


@pytest.mark.parametrize(
    "header",
    [
        None,
        b"",
        b"Bearer",
        b"Bearer ",
        b"Basic !!!",
        basic("admin", "abc"),
        basic("token", ""),
        b"Digest x",
    ],
)
def test_malformed_credentials(header: bytes | None) -> None:
    with pytest.raises(UnauthenticatedError):
        token_from_header(header)


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/model/iris/1/invocations", ("iris", "1")),
        ("/model/team/iris/Production/invocations", ("team/iris", "Production")),
        ("/model/iris/@champion/invocations", ("iris", "@champion")),
        ("/model/iris/invocations", ("iris", None)),  # the split URL
        ("/model/invocations", None),
        ("/model//1/invocations", None),
        ("/models/iris/1/invocations", None),
        ("/model/iris/1/invocations/x", None),
    ],
)
def test_scoring_paths(path: str, expected: tuple[str, str | None] | None) -> None:
    assert parse_scoring_path(path) == expected
