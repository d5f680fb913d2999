"""In-process fixtures for the local backend: a real iris model, settings on a short data dir
(Unix socket paths are short), and a listener that keeps the version events it is told."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from regserve.backends.base import VersionEvent
from regserve.settings import Settings
from tests.support.models import save_iris_model
from tests.support.timing import scaled


@pytest.fixture(scope="session")
def iris_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_iris_model(tmp_path_factory.mktemp("models") / "iris")


@pytest.fixture
def data_dir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="rsl-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def settings(data_dir: Path) -> Settings:
    """Workers as this process's user (no sandbox users), quick restarts."""
    return Settings(
        data_dir=data_dir,
        worker_users="off",
        max_restarts=3,
        restart_backoff_base=0.1,
        restart_backoff_max=0.2,
        worker_start_timeout=scaled(120),
    )


class Events(list[VersionEvent]):
    """A backend's listener: the events it was told, in order."""

    def __call__(self, event: VersionEvent) -> None:
        self.append(event)

    def types(self) -> list[str]:
        return [e.event_type for e in self if e.event_type]


@pytest.fixture
def events() -> Events:
    return Events()
