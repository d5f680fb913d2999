"""HTTP to one regserve: typed errors for error answers, and retries for scoring requests."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx

from regserve.client.errors import ConnectionFailedError, ServerError, error_for

__all__ = ["RetryPolicy", "Transport"]


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently a scoring request is retried on 503, 429 and no answer.

    The wait before retry ``n`` (from 0) is ``Retry-After`` when the server sent one, else
    ``base * 2**n`` with up to 25 % jitter; both are capped at ``cap`` seconds.
    """

    attempts: int = 8
    base: float = 0.25
    cap: float = 15.0
    on_retry: Callable[[int, float], None] | None = None
    """Called before each retry with the status (0: no answer) and the seconds it waits."""

    def delay(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.cap)
        backoff = min(self.base * 2**attempt, self.cap)
        return float(backoff * (1 + random.random() / 4))  # jitter, not a secret

    def wait(self, status: int, seconds: float) -> None:
        if self.on_retry is not None:
            self.on_retry(status, seconds)
        time.sleep(seconds)


_RETRIED_STATUSES = (429, 503)


class Transport:
    """One pooled, thread-safe HTTP client for one regserve and one token."""

    def __init__(self, url: str, token: str | None, timeout: float, pool_size: int) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        limits = httpx.Limits(max_connections=pool_size, max_keepalive_connections=pool_size)
        self.url = url
        self._http = httpx.Client(base_url=url, headers=headers, timeout=timeout, limits=limits)

    def close(self) -> None:
        self._http.close()

    def call(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        """One control-API request; its JSON answer, or the typed error it stands for."""
        response = self._send(method, path, **kwargs)
        return _json_or_raise(response)

    def post_with_retries(
        self, path: str, content: bytes, content_type: str, policy: RetryPolicy
    ) -> dict[str, Any]:
        """POST a scoring body, retrying 503, 429 and lost connections as ``policy`` says."""
        headers = {"Content-Type": content_type}
        for attempt in range(policy.attempts + 1):
            last = attempt == policy.attempts
            try:
                response = self._send("POST", path, content=content, headers=headers)
            except ConnectionFailedError:
                if last:
                    raise
                policy.wait(0, policy.delay(attempt, None))
                continue
            if response.status_code not in _RETRIED_STATUSES or last:
                return _json_or_raise(response)
            policy.wait(response.status_code, policy.delay(attempt, _retry_after(response)))
        raise AssertionError("unreachable: the last attempt returns or raises")

    def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            return self._http.request(method, path, **kwargs)
        except httpx.TimeoutException as exc:
            raise ConnectionFailedError(f"{self.url} did not answer in time ({exc!r})") from exc
        except httpx.HTTPError as exc:
            raise ConnectionFailedError(f"cannot reach {self.url}: {exc}") from exc


def _json_or_raise(response: httpx.Response) -> dict[str, Any]:
    try:
        data = response.json()
    except ValueError:
        data = None
    if response.status_code >= 400:
        body = data if isinstance(data, dict) else {}
        message = str(body.get("message") or response.text[:500] or response.reason_phrase)
        code = str(body.get("error_code", ""))
        raise error_for(response.status_code, code, message, _retry_after(response))
    if not isinstance(data, dict):
        raise ServerError(f"expected a JSON object, got: {response.text[:200]!r}")
    return data


def _retry_after(response: httpx.Response) -> float | None:
    try:
        return float(response.headers["retry-after"])
    except (KeyError, ValueError):
        return None
