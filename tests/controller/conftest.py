"""The controller in process: a real MLflow registry (a SQLite file, read by regserve's own
reader), the real state store on SQLite, the real local backend starting real worker processes
and the real router. No HTTP server: the test calls the controller as the gateway does."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import tempfile
import warnings
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from mlflow import MlflowClient

from regserve.backends.base import VersionEvent
from regserve.backends.local.backend import LocalBackend
from regserve.controller import Controller
from regserve.nodes import NodeTypes
from regserve.registry.reader import RegistryReader
from regserve.router import Router
from regserve.settings import Settings
from regserve.states import VersionState
from regserve.store import StateStore
from tests.support.models import save_iris_model
from tests.support.timing import scaled


@dataclass
class Registry:
    """An MLflow registry in a SQLite file; versions are registered from one saved iris model."""

    uri: str
    model_dir: Path
    client: MlflowClient

    def register(self, name: str, source: Path | None = None) -> str:
        """A new version of ``name`` (the registered model made when missing), of the saved
        iris model or of the model saved in ``source``."""
        if not self.client.search_registered_models(f"name = '{name}'"):
            self.client.create_registered_model(name)
        source = source or self.model_dir
        return str(self.client.create_model_version(name, source=str(source)).version)

    def promote(self, name: str, version: str, stage: str) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # stages are deprecated, still used
            self.client.transition_model_version_stage(name, version, stage)

    def archive(self, name: str, version: str) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # stages are deprecated, still used
            self.client.transition_model_version_stage(name, version, "Archived")


@pytest.fixture(scope="session")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Registry:
    root = tmp_path_factory.mktemp("registry")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    return Registry(uri, save_iris_model(root / "iris"), client)


@dataclass
class Served:
    """A running controller and what it drives."""

    controller: Controller
    store: StateStore
    router: Router

    def version_state(self, name: str, version: str) -> VersionState | None:
        found = [v for v in self.store.list_versions(name) if v.version == version]
        return found[0].state if found else None

    def routed_ready(self, name: str, version: str) -> bool:
        """Whether the router sends requests for ``version`` to a READY target (the router is
        published just after the state is stored)."""
        routes = self.router.get(name)
        served = routes.versions.get(version) if routes is not None else None
        return served is not None and served.ready

    def event_types(self, name: str) -> list[str]:
        return [e.event_type for e in self.store.list_events(name)]


@pytest.fixture
def data_dir() -> Iterator[Path]:
    """A short path: the workers' Unix socket paths are limited to about 100 bytes."""
    path = Path(tempfile.mkdtemp(prefix="rsc-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
async def served(registry: Registry, data_dir: Path) -> AsyncIterator[Served]:
    """A controller reconciling in the background (as ``regserve up`` runs it), stopped with
    its workers afterwards."""
    async with serving(registry, data_dir) as running:
        yield running


@contextlib.asynccontextmanager
async def serving(registry: Registry, data_dir: Path, **changes: Any) -> AsyncIterator[Served]:
    """The ``served`` fixture's controller, with ``changes`` to its settings."""
    options: dict[str, Any] = {
        "data_dir": data_dir,
        "registry_uri": registry.uri,
        "env_manager": "local",
        "worker_users": "off",
        "resource_limits": "off",
        "poll_interval": scaled(30),
        "worker_start_timeout": scaled(120),
    }
    settings = Settings(**{**options, **changes})
    store = StateStore(f"sqlite:///{data_dir / 'state.db'}")
    store.migrate()
    events: asyncio.Queue[VersionEvent] = asyncio.Queue()
    backend = LocalBackend(settings, events.put_nowait)
    router = Router()
    reader = RegistryReader(registry.uri)
    node_types = NodeTypes.defaults().api()
    controller = Controller(settings, store, reader, backend, router, events, node_types)
    await backend.start()
    loop = asyncio.create_task(controller.run())
    try:
        yield Served(controller, store, router)
    finally:
        loop.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await loop
        await controller.shutdown()
        store.close()
