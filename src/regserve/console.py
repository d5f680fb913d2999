"""What ``regserve up`` tells the person at its console beyond log lines: the demo's start-up
steps and what happens at Ctrl-C.

The demo's steps are read from what the controller and the backend already record (the
version's state and state message in the store, polled): each line is printed once, in order,
and a step too quick to be seen is not printed.
"""

from __future__ import annotations

import asyncio
import re
import shlex
from collections.abc import Callable
from dataclasses import dataclass, field

from regserve.states import VersionState
from regserve.store import StateStore

__all__ = ["DemoProgress", "curl_command"]

_POLL = 0.2
_REQUIREMENTS = re.compile(r"\b(\d+) requirements\b")


def curl_command(url: str, authorization: str) -> str:
    """A curl scoring one iris row at ``url``; ``authorization`` is the header's value as the
    shell should read it (e.g. ``Bearer $(cat <file>)``)."""
    body = (
        '{"dataframe_records": [{"sepal_length": 5.1, "sepal_width": 3.5, '
        '"petal_length": 1.4, "petal_width": 0.2}]}'
    )
    return (
        f'curl -H "Authorization: {authorization}" -H "Content-Type: application/json" '
        f"-d {shlex.quote(body)} {url}"
    )


@dataclass
class DemoProgress:
    """Prints "building environment (n requirements)...", "loading..." and "ready: <curl>"
    as one version of the demo goes through them."""

    store: StateStore
    announce: Callable[[str], None]
    printed: list[str] = field(default_factory=list)

    def say(self, step: str, line: str) -> None:
        """Print ``line`` unless ``step`` was printed already."""
        if step not in self.printed:
            self.printed.append(step)
            self.announce(line)

    async def follow(self, model: str, version: str, curl: str) -> bool:
        """Until the version is READY (True) or FAILED (False)."""
        while True:
            records = await asyncio.to_thread(self.store.list_versions, model)
            record = next((r for r in records if r.version == version), None)
            if record is not None and self._step(record.state, record.state_message, curl):
                return record.state is VersionState.READY
            await asyncio.sleep(_POLL)

    def _step(self, state: VersionState, message: str, curl: str) -> bool:
        """Print what this state says; True once it is final."""
        needed = _REQUIREMENTS.search(message)
        if state is VersionState.PENDING and needed:
            self.say("environment", f"building environment ({needed.group(1)} requirements)...")
        elif state is VersionState.LAUNCHING:
            self.say("loading", "loading...")
        elif state is VersionState.READY:
            self.say("loading", "loading...")
            self.say("ready", f"ready: {curl}")
            return True
        elif state is VersionState.FAILED:
            self.say("failed", f"the demo model failed to start: {message}")
            return True
        return False
