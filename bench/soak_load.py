"""The soak's steady load, and what each ref pointed at while it ran.

A few asyncio client tasks send scoring requests one after another, each cycling through the
refs (version numbers, a stage, an alias), and record every outcome: status code or
connection error, the answering version, and when it was sent and answered. The
:class:`Timeline` knows which versions each ref pointed at in the registry and when, so that
an answer can be judged misrouted.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

import httpx

__all__ = ["Outcome", "Timeline", "run_load"]

PAUSE_AFTER_FAILURE = 0.25
"""A client task waits this long after a failed request before its next one (as a client
that retries would), so that a down server is not counted thousands of times a second."""


@dataclass(frozen=True)
class Outcome:
    """One scoring request as the client saw it."""

    ref: str
    sent: float
    answered: float
    status: int | None
    """None: no HTTP answer (see ``error``)."""
    error: str | None
    """The httpx exception's class name when there was no answer."""
    version: str | None
    """The ``X-Model-Version`` of the answer."""

    @property
    def cause(self) -> str | None:
        """Why it failed (``"status 503"``, ``"ConnectError"``), or None for a 200."""
        if self.status == 200:
            return None
        return f"status {self.status}" if self.status is not None else str(self.error)


@dataclass
class Timeline:
    """The versions each ref pointed at in the registry, from a time on (monotonic clock)."""

    changes: dict[str, list[tuple[float, frozenset[str]]]] = field(default_factory=dict)

    def point(self, ref: str, versions: set[str], at: float | None = None) -> None:
        moment = time.monotonic() if at is None else at
        self.changes.setdefault(ref, []).append((moment, frozenset(versions)))

    def allowed(self, ref: str, since: float, until: float) -> set[str]:
        """Every version ``ref`` pointed at during [since, until]; a number is itself."""
        if ref not in self.changes:
            return {ref}
        found: set[str] = set()
        history = self.changes[ref]
        for i, (start, versions) in enumerate(history):
            end = history[i + 1][0] if i + 1 < len(history) else float("inf")
            if start <= until and end >= since:
                found |= versions
        return found


async def run_load(
    url: str,
    headers: dict[str, str],
    paths: dict[str, str],
    body: bytes,
    concurrency: int,
    stop: asyncio.Event,
) -> list[Outcome]:
    """Send requests to ``paths`` (ref -> URL path) from ``concurrency`` tasks until ``stop``."""
    outcomes: list[Outcome] = []
    refs = list(paths)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(
        base_url=url, headers=headers, timeout=30, limits=limits
    ) as client:

        async def user(offset: int) -> None:
            turn = offset
            while not stop.is_set():
                ref = refs[turn % len(refs)]
                turn += 1
                outcome = await _send(client, ref, paths[ref], body)
                outcomes.append(outcome)
                if outcome.cause is not None:
                    await asyncio.sleep(PAUSE_AFTER_FAILURE)

        await asyncio.gather(*(user(i) for i in range(concurrency)))
    return outcomes


async def _send(client: httpx.AsyncClient, ref: str, path: str, body: bytes) -> Outcome:
    sent = time.monotonic()
    try:
        r = await client.post(path, content=body, headers={"content-type": "application/json"})
    except httpx.HTTPError as error:
        return Outcome(ref, sent, time.monotonic(), None, type(error).__name__, None)
    return Outcome(
        ref, sent, time.monotonic(), r.status_code, None, r.headers.get("x-model-version")
    )
