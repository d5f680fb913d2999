"""Steady scoring load from a few client threads, every answer recorded (for fault tests)."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from types import TracebackType

import httpx

ROW = {"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}


@dataclass(frozen=True)
class Answer:
    ref: str
    status: int
    """0 when the connection itself failed."""
    version: str | None
    """``X-Model-Version``."""
    detail: str
    at: float
    took: float = 0.0
    """Seconds from sending the request to its answer."""


class ScoringLoad:
    """``clients`` threads per ref, each scoring one row in a loop until the block ends."""

    def __init__(self, url: str, token: str, model: str, refs: list[str], clients: int = 2) -> None:
        self._url = url
        self._headers = {"Authorization": f"Bearer {token}"}
        self._model = model
        self._refs = refs
        self._clients = clients
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self.answers: list[Answer] = []

    def __enter__(self) -> ScoringLoad:
        for ref in self._refs:
            for _ in range(self._clients):
                thread = threading.Thread(target=self._run, args=(ref,), daemon=True)
                thread.start()
                self._threads.append(thread)
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=60)

    def _run(self, ref: str) -> None:
        path = f"/model/{self._model}/{ref}/invocations"
        with httpx.Client(base_url=self._url, headers=self._headers, timeout=30) as http:
            while not self._stop.is_set():
                sent = time.monotonic()
                try:
                    r = http.post(path, json={"dataframe_records": [ROW]})
                    now = time.monotonic()
                    answer = Answer(
                        ref,
                        r.status_code,
                        r.headers.get("x-model-version"),
                        r.text[:300],
                        now,
                        now - sent,
                    )
                except httpx.HTTPError as exc:
                    now = time.monotonic()
                    answer = Answer(ref, 0, None, repr(exc), now, now - sent)
                with self._lock:
                    self.answers.append(answer)

    def snapshot(self) -> list[Answer]:
        with self._lock:
            return list(self.answers)

    def failures(self) -> list[Answer]:
        return [a for a in self.snapshot() if a.status != 200]

    def last_version(self, ref: str) -> str | None:
        """The version that answered the newest request on ``ref``."""
        return next((a.version for a in reversed(self.snapshot()) if a.ref == ref), None)

    def count(self, ref: str | None = None) -> int:
        return sum(1 for a in self.snapshot() if ref is None or a.ref == ref)

    def versions(self, ref: str) -> set[str | None]:
        return {a.version for a in self.snapshot() if a.ref == ref}
