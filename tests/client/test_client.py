"""The client's pure parts: connection resolution, error typing and exit codes, retries."""

from __future__ import annotations

from pathlib import Path

import pytest

from regserve.cli.remote import exit_code_for
from regserve.client import errors
from regserve.client.connection import Connection, ProfileError, resolve_connection
from regserve.client.transport import RetryPolicy


def test_flags_beat_env_beat_profile(profiles: dict[str, str]) -> None:
    env = {**profiles, "REGSERVE_HOST": "http://env:2", "REGSERVE_TOKEN": "t-env"}
    assert resolve_connection("flag:3", "t-flag", environ=env) == Connection(
        "http://flag:3", "t-flag"
    )
    assert resolve_connection(environ=env) == Connection("http://env:2", "t-env")
    assert resolve_connection(environ=profiles) == Connection("http://default:1", "t-default")
    prod = resolve_connection(profile="prod", environ=profiles)
    assert prod == Connection("http://prod.example:9000", "t-prod")
    named = {**profiles, "REGSERVE_PROFILE": "prod"}
    assert resolve_connection(environ=named).token == "t-prod"


def test_missing_profile_is_an_error(profiles: dict[str, str], tmp_path: Path) -> None:
    with pytest.raises(ProfileError, match=r"no profile \[staging\]"):
        resolve_connection(profile="staging", environ=profiles)
    nothing = {"REGSERVE_CONFIG_FILE": str(tmp_path / "absent.ini")}
    assert resolve_connection(environ=nothing).url == "http://127.0.0.1:8080"


@pytest.mark.parametrize(
    ("status", "code", "cls", "exit_code"),
    [
        (400, "INVALID_PARAMETER_VALUE", errors.BadRequestError, 1),
        (401, "UNAUTHENTICATED", errors.UnauthenticatedError, 3),
        (403, "PERMISSION_DENIED", errors.PermissionDeniedError, 3),
        (404, "ENDPOINT_NOT_FOUND", errors.NotFoundError, 4),
        (404, "", errors.NotFoundError, 4),
        (413, "REQUEST_TOO_LARGE", errors.RequestTooLargeError, 1),
        (429, "REQUEST_LIMIT_EXCEEDED", errors.RateLimitedError, 1),
        (503, "TEMPORARILY_UNAVAILABLE", errors.UnavailableError, 5),
        (500, "INTERNAL_ERROR", errors.ServerError, 1),
    ],
)
def test_error_codes_map_to_classes_and_exit_codes(
    status: int, code: str, cls: type[errors.ClientError], exit_code: int
) -> None:
    error = errors.error_for(status, code, "why")
    assert type(error) is cls
    assert error.status == status
    assert exit_code_for(error) == exit_code


def test_retry_delay_honours_retry_after_and_caps() -> None:
    policy = RetryPolicy(base=1.0, cap=5.0)
    assert policy.delay(0, 2.0) == 2.0
    assert policy.delay(0, 60.0) == 5.0
    assert 1.0 <= policy.delay(0, None) <= 1.25
    assert policy.delay(10, None) <= 5.0 * 1.25
