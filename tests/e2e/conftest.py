"""A real regserve process per test, with the hosted MLflow registry."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.registry import UserRegistry, user_registry
from tests.support.server import ADMIN_TOKEN, RegServeProcess


@pytest.fixture
def regserve(tmp_path: Path) -> Iterator[RegServeProcess]:
    server = RegServeProcess(tmp_path / "data").start()
    yield server
    server.close()


@pytest.fixture
def registry(regserve: RegServeProcess, monkeypatch: pytest.MonkeyPatch) -> Iterator[UserRegistry]:
    with user_registry(monkeypatch, regserve.url, ADMIN_TOKEN) as reg:
        yield reg
