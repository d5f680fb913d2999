"""The demo's console progress, read from a real store as the controller writes it."""

from __future__ import annotations

import asyncio
import shlex
from pathlib import Path

from regserve.console import DemoProgress, curl_command
from regserve.states import VersionState
from regserve.store import StateStore


def test_each_step_is_printed_once_in_order(tmp_path: Path) -> None:
    store = StateStore(f"sqlite:///{tmp_path / 'state.db'}")
    store.migrate()
    printed: list[str] = []
    progress = DemoProgress(store, printed.append)
    steps = [
        (VersionState.PENDING, "Deploying version 2."),
        (
            VersionState.PENDING,
            "Preparing environment 0123 (Python 3.11, 6 requirements from requirements.txt).",
        ),
        (VersionState.PENDING, "Installing 6 requirements from requirements.txt with uv."),
        (VersionState.PENDING, "Environment ready; starting the worker."),
        (VersionState.LAUNCHING, "Loading the model."),
        (VersionState.LAUNCHING, "Loading the model (attempt 2)."),
        (VersionState.READY, "Ready."),
    ]

    async def run() -> bool:
        follow = asyncio.create_task(progress.follow("iris-classifier", "2", "curl x"))
        for state, message in steps:
            await asyncio.to_thread(store.put_version, "iris-classifier", "2", state, message)
            await asyncio.sleep(0.5)  # more than the poll
        return await asyncio.wait_for(follow, 5)

    assert asyncio.run(run()) is True
    assert printed == ["building environment (6 requirements)...", "loading...", "ready: curl x"]
    store.close()


def test_the_curl_command_is_one_shell_word_per_part() -> None:
    command = curl_command("http://127.0.0.1:8080/model/m/Production/invocations", "Bearer $T")
    words = shlex.split(command)
    assert words[:5] == [
        "curl",
        "-H",
        "Authorization: Bearer $T",
        "-H",
        "Content-Type: application/json",
    ]
    assert words[5] == "-d"
    assert words[-1] == "http://127.0.0.1:8080/model/m/Production/invocations"
