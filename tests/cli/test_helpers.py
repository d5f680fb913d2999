"""The command line's pure parts: model URLs, following a log, where ``up`` listens."""

from __future__ import annotations

import pytest

from regserve.cli.score import parse_model_url
from regserve.cli.serving import _new_part
from regserve.settings import Settings


@pytest.mark.parametrize(
    ("url", "parsed"),
    [
        ("http://h:1/model/iris/Production/invocations", ("http://h:1", "iris", "Production")),
        ("https://h/model/my%20model/@champion", ("https://h", "my model", "@champion")),
        ("models:/iris/3", (None, "iris", "3")),
        ("models:/iris@champion", (None, "iris", "champion")),
        ("iris", (None, "iris", "latest")),
    ],
)
def test_model_urls(url: str, parsed: tuple[str | None, str, str]) -> None:
    assert parse_model_url(url) == parsed


def test_following_a_log_prints_only_what_is_new() -> None:
    assert _new_part("a\nb\n", "a\nb\nc\n") == "c\n"
    old = "".join(f"line {i}\n" for i in range(100))
    slid = "".join(f"line {i}\n" for i in range(50, 120))  # the tail window moved on
    assert _new_part(old, slid) == "".join(f"line {i}\n" for i in range(100, 120))
    assert _new_part(old, "rotated\n") == "rotated\n"


def test_up_reads_a_client_url_in_regserve_host(no_regserve_env: pytest.MonkeyPatch) -> None:
    monkeypatch = no_regserve_env
    monkeypatch.setenv("REGSERVE_HOST", "http://127.0.0.1:9123")
    assert (Settings().host, Settings().port) == ("127.0.0.1", 9123)
    monkeypatch.setenv("REGSERVE_PORT", "9000")
    assert (Settings().host, Settings().port) == ("127.0.0.1", 9000)
    assert Settings(host="0.0.0.0").host == "0.0.0.0"
